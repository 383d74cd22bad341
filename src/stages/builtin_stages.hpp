// Registration of the generic built-in stages, one file each.
#pragma once

#include "micromodels/registry.hpp"

namespace micromodels::detail {

void register_synthetic_source(Registry& registry);
void register_model_stages(Registry& registry);
void register_pass_stage(Registry& registry);
void register_jsonl_sink(Registry& registry);

}  // namespace micromodels::detail
