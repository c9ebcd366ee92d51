// The smallest useful piquant program: load a model (or a seeded demo model) and generate.
//   minimal [MODEL TOKENIZER [PROMPT]]   (no arguments: a seeded demo model)
#include <piquant/piquant.hpp>

#include <iostream>

int main(int argc, char** argv) {
  try {
    std::shared_ptr<const piquant::Model> model;
    if (argc > 2) {
      piquant::LoadOptions options;
      options.tokenizer_path = argv[2];
      model = piquant::Model::load(argv[1], options);
    } else {
      model = piquant::Model::synthetic();  // no model given: seeded random weights
    }
    piquant::Session session(model);
    piquant::GenerateOptions options;
    options.max_tokens = 40;
    options.sampler.temperature = 0;  // greedy
    const char* prompt = argc > 3 ? argv[3] : "";
    auto result = session.generate(prompt, [](std::string_view piece) {
      std::cout << piece << std::flush;
      return true;
    }, options);
    std::cout << "\n[" << result.generated_ids.size() << " tokens]\n";
    return 0;
  } catch (const piquant::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
