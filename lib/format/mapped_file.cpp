#include "format/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <limits>

namespace piquant {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(ErrorCode::kIo, path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error(ErrorCode::kIo, path + ": cannot stat: " + std::strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorCode::kIo, path + ": is a directory, expected a file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw Error(ErrorCode::kIo, path + ": cannot mmap " + std::to_string(size_) +
                                      " bytes: " + std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void ByteReader::seek(size_t pos, const char* what) {
  if (pos > size_) {
    fail(std::string(what) + ": offset " + std::to_string(pos) + " beyond end of data (" +
         std::to_string(size_) + " bytes)");
  }
  pos_ = pos;
}

void ByteReader::require(size_t n, const char* what) const {
  if (n > size_ - pos_) {
    fail(std::string(what) + ": needs " + std::to_string(n) + " bytes at offset " +
         std::to_string(pos_) + " but only " + std::to_string(size_ - pos_) +
         " remain (size " + std::to_string(size_) + ", truncated?)");
  }
}

void ByteReader::fail(const std::string& message) const {
  throw Error(ErrorCode::kFormat, source_ + ": " + message);
}

size_t checked_mul(size_t a, size_t b, const std::string& what) {
  if (a != 0 && b > std::numeric_limits<size_t>::max() / a) {
    throw Error(ErrorCode::kFormat, what + ": size " + std::to_string(a) + " x " +
                                        std::to_string(b) + " overflows");
  }
  return a * b;
}

size_t checked_add(size_t a, size_t b, const std::string& what) {
  if (b > std::numeric_limits<size_t>::max() - a) {
    throw Error(ErrorCode::kFormat, what + ": size overflows");
  }
  return a + b;
}

}  // namespace piquant
