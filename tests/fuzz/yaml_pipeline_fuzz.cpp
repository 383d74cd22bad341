// libFuzzer target for the pipeline YAML reader: any text must either read as a Pipeline or be
// refused with a ConfigError (or ParamError) naming what is wrong; never a crash, a leak, a hang,
// undefined behaviour or another exception (yaml-cpp's own must not escape). What reads is then
// validated against the built-in stage types, with the same promise.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "micromodels/params.hpp"
#include "micromodels/pipeline.hpp"
#include "micromodels/registry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const micromodels::Registry registry = micromodels::Registry::with_builtins();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const micromodels::Pipeline pipeline = micromodels::Pipeline::from_yaml_string(text, "fuzz.yaml");
    pipeline.validate(registry);
    (void)pipeline.to_text(registry);
    (void)pipeline.to_dot(registry);
  } catch (const micromodels::ConfigError&) {
    return 0;  // refused with a message: the expected outcome for most mutations
  } catch (const micromodels::ParamError&) {
    return 0;
  }
  // Any other exception escapes and libFuzzer reports it as a crash.
  return 0;
}
