#include "micromodels/stage.hpp"

namespace micromodels {

void Stage::process_batch(std::vector<Packet>& batch, std::vector<Packet>& out) {
  for (Packet& packet : batch) process(std::move(packet), out);
}

}  // namespace micromodels
