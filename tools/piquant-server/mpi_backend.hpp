#pragma once
// piquant-server under mpirun (docs/distributed.md, docs/server.md): rank 0 serves HTTP and runs
// the scheduler (Engine) over an MpiBackend; every call the engine makes on the model (a decode
// of a batch: its rows' tokens, positions and sequences; the KV operations add, fork, remove,
// rewind; the adapters of a sequence) is sent to the other ranks first, which replay it on a
// Context of their own slice of the model (follow_rank0). A decode's forward pass then meets in
// the slice's sums and logits gather (lib/dist), so rank 0 gets the whole logits and samples;
// the other ranks never sample and never see text. Built with -DPIQUANT_MPI=ON only.
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine.hpp"

namespace piquant {
class MpiCommandChannel;
}

namespace piquant::server {

/// Rank 0's backend: a Context of rank 0's slice; each call is sent to the other ranks before it
/// runs here. A failure of the job (a rank that died or stalled: a sum or gather timed out, or a
/// command could not be sent) calls `on_failure` once with the message; decode and fork throw it
/// then and from there on (the engine answers the requests in flight with it).
std::unique_ptr<ModelBackend> make_mpi_backend(
    std::shared_ptr<const Model> slice, const ContextOptions& options,
    std::shared_ptr<MpiCommandChannel> channel, std::vector<std::shared_ptr<const LoraAdapter>> adapters,
    double timeout_s, std::function<void(const std::string&)> on_failure);

/// Rank 0, at a clean stop (after the engine stopped): tells the other ranks to return from
/// follow_rank0.
void send_quit(MpiCommandChannel& channel, double timeout_s);

/// Every rank but 0: replays rank 0's calls on a Context of this rank's slice (the same options,
/// the adapters loaded in the same order) until rank 0 sends quit (returns true). Once
/// `stop_requested` (a signal to this rank: mpirun passes one to every rank) rank 0 has
/// `timeout_s` to send quit; then returns false with *why set.
bool follow_rank0(std::shared_ptr<const Model> slice, const ContextOptions& options,
                  MpiCommandChannel& channel,
                  const std::vector<std::shared_ptr<const LoraAdapter>>& adapters,
                  const std::atomic<bool>& stop_requested, double timeout_s, std::string* why);

}  // namespace piquant::server
