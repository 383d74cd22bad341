// `model.onnx`: any ONNX model on OpenCV DNN, preprocessing set by params, outputs as tensors.
#include "image_mat.hpp"
#include "model_pool.hpp"
#include "stage_registration.hpp"
#include "vision/models/onnx_model.hpp"

namespace micromodels::vision {

namespace {

Tensor to_tensor(const cv::Mat& mat) {
  Tensor tensor;
  tensor.dtype = Depth::f32;
  for (int i = 0; i < mat.dims; ++i) tensor.shape.push_back(mat.size[i]);
  cv::Mat f32;
  mat.convertTo(f32, CV_32F);
  tensor.data = Buffer::copy_of(f32.data, f32.total() * sizeof(float));
  return tensor;
}

// The preprocessing params, checked; a ParamError names the key, so a pipeline file reports its
// line.
OnnxInputSpec spec_of(const Params& params) {
  OnnxInputSpec spec;
  const auto& size = params.numbers("size");
  if (size.size() != 2) {
    throw ParamError(
        "size", "param 'size': expected two numbers [width, height]; got " + format_param(size));
  }
  spec.size = cv::Size(static_cast<int>(size[0]), static_cast<int>(size[1]));
  spec.scale = params.number("scale");
  const auto& mean = params.numbers("mean");
  for (std::size_t i = 0; i < std::min<std::size_t>(mean.size(), 3); ++i)
    spec.mean[static_cast<int>(i)] = mean[i];
  const std::string& channels = params.text("channels");
  if (channels != "rgb" && channels != "bgr") {
    throw ParamError("channels", "param 'channels': expected rgb or bgr, got '" + channels + "'");
  }
  spec.swap_rb = channels == "rgb";
  const std::string& layout = params.text("layout");
  if (layout != "nchw" && layout != "nhwc") {
    throw ParamError("layout", "param 'layout': expected nchw or nhwc, got '" + layout + "'");
  }
  spec.layout = layout == "nchw" ? TensorLayout::nchw : TensorLayout::nhwc;
  return spec;
}

class OnnxModelStage final : public Stage {
 public:
  explicit OnnxModelStage(const Params& params)
      : input_(params.text("input")),
        prefix_(params.text("output_prefix")),
        models_([spec = spec_of(params), path = params.text("path")] {
          return std::make_unique<OnnxModel>(path, spec);
        }) {}

  void process(Packet packet, std::vector<Packet>& out) override {
    std::vector<Packet> batch;
    batch.push_back(std::move(packet));
    process_batch(batch, out);
  }

  void process_batch(std::vector<Packet>& batch, std::vector<Packet>& out) override {
    std::vector<cv::Mat> images;
    for (const Packet& packet : batch) images.push_back(to_mat(packet.get<Image>(input_)));
    const std::vector<cv::Mat> outputs =
        models_.with([&](OnnxModel& model) { return model.run(images); });
    for (std::size_t i = 0; i < batch.size(); ++i) {
      for (std::size_t k = 0; k < outputs.size(); ++k) {
        // Row i of each batched output belongs to packet i.
        const cv::Mat& all = outputs[k];
        std::vector<cv::Range> ranges(static_cast<std::size_t>(all.dims), cv::Range::all());
        ranges[0] = cv::Range(static_cast<int>(i), static_cast<int>(i) + 1);
        batch[i].set(prefix_ + std::to_string(k), to_tensor(all(ranges.data()).clone()));
      }
      out.push_back(std::move(batch[i]));
    }
  }

 private:
  std::string input_;
  std::string prefix_;
  ModelPool<OnnxModel> models_;
};

}  // namespace

void register_onnx_model(Registry& registry) {
  registry.add({
      .name = "model.onnx",
      .help = "Runs an ONNX model (OpenCV DNN) on an image field; each output becomes a tensor "
              "field <output_prefix><index>.",
      .params = {{"path", ParamType::text, std::nullopt, "the .onnx file"},
                 {"input", ParamType::text, std::string("frame"), "image field to feed"},
                 {"size", ParamType::numbers, std::vector<double>{224, 224},
                  "[width, height], pixels", ParamRange{.low = 1}},
                 {"scale", ParamType::number, 1.0 / 255.0, "value = (pixel - mean) * scale"},
                 {"mean", ParamType::numbers, std::vector<double>{0, 0, 0}, "per channel"},
                 {"channels", ParamType::text, std::string("rgb"), "rgb or bgr"},
                 {"layout", ParamType::text, std::string("nchw"), "nchw or nhwc"},
                 {"output_prefix", ParamType::text, std::string("output"), "field name prefix"}},
      .info =
          [](const Params& params) {
            (void)spec_of(params);  // a bad param is a configuration error, at its line
            return StageInfo{.reads = {params.text("input")},
                             .writes = {params.text("output_prefix") + "0"},
                             .batching = true};
          },
      .make = [](const Params& params) -> std::unique_ptr<Stage> {
        return std::make_unique<OnnxModelStage>(params);
      },
  });
}

}  // namespace micromodels::vision
