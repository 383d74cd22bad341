// The whole engine API.
#pragma once

#include "micromodels/metrics.hpp"
#include "micromodels/packet.hpp"
#include "micromodels/packet_codec.hpp"
#include "micromodels/params.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/plugin.hpp"
#include "micromodels/registry.hpp"
#include "micromodels/runner.hpp"
#include "micromodels/stage.hpp"
#include "micromodels/stage_harness.hpp"
