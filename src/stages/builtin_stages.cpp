#include "builtin_stages.hpp"

namespace micromodels {

void register_builtin_stages(Registry& registry) {
  detail::register_synthetic_source(registry);
  detail::register_model_stages(registry);
  detail::register_pass_stage(registry);
  detail::register_jsonl_sink(registry);
}

}  // namespace micromodels
