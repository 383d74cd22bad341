#include "vision/models/landmarks68.hpp"

#include <cmath>
#include <fstream>
#include <stdexcept>
#include <string>

#include <dlib/image_processing/shape_predictor.h>
#include <dlib/opencv/cv_image.h>
#include <dlib/serialize.h>

#include "vision/models/image_utils.hpp"
#include "vision/models/model_files.hpp"

namespace micromodels::vision {

// dlib's shape predictor, run on its own trees laid out for speed. dlib keeps each leaf's 136
// values in a heap vector of its own and adds them with scalar instructions, so a fit (15
// cascades of 500 trees) waits for memory at each of its 7,500 leaves, scattered over 65 MB.
// Here each cascade's leaves are one array: the leaf of every tree is found first (and its
// values prefetched), then the leaves are summed in tree order, each value as dlib adds it, so
// the shape is the same to the bit. The points are returned before dlib rounds them to pixels.
struct Landmarks68::Impl {
  struct Cascade {
    std::vector<dlib::impl::split_feature> splits;  // tree after tree, `nodes` each
    std::vector<float> leaves;                      // tree after tree, nodes + 1 leaves of `dims`
    std::vector<unsigned long> anchor_idx;          // the feature pixels, against the shape
    std::vector<dlib::vector<float, 2>> deltas;
  };
  dlib::matrix<float, 0, 1> initial_shape;
  std::vector<Cascade> cascades;
  std::size_t nodes = 0;  // splits per tree (a full tree: nodes + 1 leaves)
  std::size_t dims = 0;   // 2 per point

  void load(std::istream& in);
  [[nodiscard]] Landmarks68Points fit(const dlib::cv_image<unsigned char>& image,
                                      const dlib::rectangle& box) const;
};

// dlib's format (dlib::deserialize(shape_predictor&)): version 1, the mean shape, the forests,
// then each cascade's feature pixels (anchor point and offset).
void Landmarks68::Impl::load(std::istream& in) {
  int version = 0;
  dlib::deserialize(version, in);
  if (version != 1) {
    throw dlib::serialization_error("version " + std::to_string(version) + ", expected 1");
  }
  std::vector<std::vector<dlib::impl::regression_tree>> forests;
  std::vector<std::vector<unsigned long>> anchor_idx;
  std::vector<std::vector<dlib::vector<float, 2>>> deltas;
  dlib::deserialize(initial_shape, in);
  dlib::deserialize(forests, in);
  dlib::deserialize(anchor_idx, in);
  dlib::deserialize(deltas, in);
  dims = static_cast<std::size_t>(initial_shape.size());
  if (dims == 0 || dims % 2 != 0) {
    throw dlib::serialization_error("a mean shape of " + std::to_string(dims) + " values");
  }
  if (forests.empty() || forests.front().empty() || anchor_idx.size() != forests.size() ||
      deltas.size() != forests.size()) {
    throw dlib::serialization_error("no cascades, or cascades without their feature pixels");
  }
  nodes = forests.front().front().splits.size();
  if (nodes == 0) throw dlib::serialization_error("trees without splits");
  for (std::size_t c = 0; c < forests.size(); ++c) {
    Cascade cascade;
    cascade.anchor_idx = std::move(anchor_idx[c]);
    cascade.deltas = std::move(deltas[c]);
    if (cascade.anchor_idx.size() != cascade.deltas.size()) {
      throw dlib::serialization_error("a cascade's anchors and offsets differ in number");
    }
    cascade.splits.reserve(forests[c].size() * nodes);
    cascade.leaves.reserve(forests[c].size() * (nodes + 1) * dims);
    for (dlib::impl::regression_tree& tree : forests[c]) {
      if (tree.splits.size() != nodes || tree.leaf_values.size() != nodes + 1) {
        throw dlib::serialization_error("trees of different depths");
      }
      for (const dlib::impl::split_feature& split : tree.splits) {
        if (split.idx1 >= cascade.deltas.size() || split.idx2 >= cascade.deltas.size()) {
          throw dlib::serialization_error("a split reads a feature pixel that is not there");
        }
        cascade.splits.push_back(split);
      }
      for (const dlib::matrix<float, 0, 1>& leaf : tree.leaf_values) {
        if (static_cast<std::size_t>(leaf.size()) != dims) {
          throw dlib::serialization_error("a leaf of another size than the shape");
        }
        cascade.leaves.insert(cascade.leaves.end(), &leaf(0), &leaf(0) + dims);
      }
      tree = {};  // the copy is made: let go of dlib's as we go
    }
    cascades.push_back(std::move(cascade));
  }
}

Landmarks68Points Landmarks68::Impl::fit(const dlib::cv_image<unsigned char>& image,
                                         const dlib::rectangle& box) const {
  dlib::matrix<float, 0, 1> shape = initial_shape;
  std::vector<float> pixels;
  std::vector<const float*> chosen;
  for (const Cascade& cascade : cascades) {
    dlib::impl::extract_feature_pixel_values(image, box, shape, initial_shape, cascade.anchor_idx,
                                             cascade.deltas, pixels);
    chosen.resize(cascade.splits.size() / nodes);  // one leaf per tree
    for (std::size_t t = 0; t < chosen.size(); ++t) {
      const dlib::impl::split_feature* split = &cascade.splits[t * nodes];
      std::size_t i = 0;
      while (i < nodes) {  // as dlib::impl::regression_tree::operator()
        i = pixels[split[i].idx1] - pixels[split[i].idx2] > split[i].thresh ? 2 * i + 1 : 2 * i + 2;
      }
      chosen[t] = &cascade.leaves[(t * (nodes + 1) + (i - nodes)) * dims];
      for (std::size_t b = 0; b < dims * sizeof(float); b += 64) {
        __builtin_prefetch(reinterpret_cast<const char*>(chosen[t]) + b);
      }
    }
    float* __restrict sum = &shape(0);
    for (const float* leaf : chosen) {
      for (std::size_t d = 0; d < dims; ++d) sum[d] += leaf[d];
    }
  }
  const dlib::point_transform_affine to_image = dlib::impl::unnormalizing_tform(box);
  Landmarks68Points points;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const dlib::vector<double, 2> p = to_image(dlib::impl::location(shape, i));
    points[i] = cv::Point2f(static_cast<float>(p.x()), static_cast<float>(p.y()));
  }
  return points;
}

Landmarks68::Landmarks68(const std::filesystem::path& model_path)
    : impl_(std::make_unique<Impl>()) {
  require_file(model_path, "dlib shape predictor");
  try {
    std::ifstream in(model_path, std::ios::binary);
    impl_->load(in);
  } catch (const std::exception& e) {  // dlib::serialization_error and friends
    throw std::runtime_error("cannot load '" + model_path.string() +
                             "' as a dlib shape predictor (corrupt or wrong file?); run "
                             "scripts/fetch_media.sh. dlib: " +
                             e.what());
  }
  if (impl_->dims != 2 * 68) {
    throw std::runtime_error("'" + model_path.string() + "' predicts " +
                             std::to_string(impl_->dims / 2) + " points, expected 68");
  }
}

Landmarks68::~Landmarks68() = default;

Landmarks68Points Landmarks68::fit(const cv::Mat& image, const cv::Rect2f& face) const {
  return fit(image, std::vector<cv::Rect2f>{face}).front();
}

std::vector<Landmarks68Points> Landmarks68::fit(const cv::Mat& image,
                                                const std::vector<cv::Rect2f>& faces) const {
  // The predictor samples pixel intensities; on a gray image it does no per-sample conversion.
  const cv::Mat gray = to_gray8(image, "Landmarks68::fit");
  const dlib::cv_image<unsigned char> view(gray);
  std::vector<Landmarks68Points> result;
  result.reserve(faces.size());
  for (const auto& f : faces) {
    if (!(f.width > 0 && f.height > 0)) {
      throw std::invalid_argument("Landmarks68::fit: empty face box");
    }
    // dlib boxes are inclusive integer rectangles.
    const dlib::rectangle box(std::lround(f.x), std::lround(f.y), std::lround(f.x + f.width) - 1,
                              std::lround(f.y + f.height) - 1);
    result.push_back(impl_->fit(view, box));
  }
  return result;
}

}  // namespace micromodels::vision
