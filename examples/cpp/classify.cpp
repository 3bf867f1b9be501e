// classify: the C example in C++17, with RAII wrappers over the skinlesion C API and one
// batched call for all images.
//
//   classify MODEL.json IMAGE...
//
// Research and education only: not a medical device.
//
// Build against the static library (after `cargo build -p skinlesion-ffi`):
//   c++ -std=c++17 examples/cpp/classify.cpp
//       $(PKG_CONFIG_PATH=target/debug pkg-config --cflags --libs skinlesion-static)
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "skinlesion.h"

namespace skinlesion {

// A failed call: its status and the library's message.
class Error : public std::runtime_error {
 public:
  explicit Error(skinlesion_status status)
      : std::runtime_error(skinlesion_last_error_message()), status_(status) {}
  skinlesion_status status() const { return status_; }

 private:
  skinlesion_status status_;
};

inline void check(skinlesion_status status) {
  if (status != SKINLESION_STATUS_OK) throw Error(status);
}

class Options {
 public:
  Options() {
    skinlesion_options *raw = nullptr;
    check(skinlesion_options_new(&raw));
    handle_.reset(raw);
  }
  Options &device(const std::string &name) {
    check(skinlesion_options_set_device(handle_.get(), name.c_str()));
    return *this;
  }
  Options &threads(size_t n) {
    check(skinlesion_options_set_threads(handle_.get(), n));
    return *this;
  }
  const skinlesion_options *get() const { return handle_.get(); }

 private:
  struct Free {
    void operator()(skinlesion_options *o) const { skinlesion_options_free(o); }
  };
  std::unique_ptr<skinlesion_options, Free> handle_;
};

// Thread-safe: share one Classifier between threads.
class Classifier {
 public:
  Classifier(const std::string &model_path, const Options &options) {
    skinlesion_classifier *raw = nullptr;
    check(skinlesion_classifier_new(model_path.c_str(), options.get(), &raw));
    handle_.reset(raw);
  }

  // One prediction and one status per image, from one forward pass.
  std::vector<skinlesion_prediction> classify(const std::vector<std::string> &encoded,
                                              std::vector<skinlesion_status> &statuses) const {
    std::vector<skinlesion_encoded_image> images;
    for (const auto &bytes : encoded)
      images.push_back({reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size()});
    std::vector<skinlesion_prediction> out(images.size());
    statuses.assign(images.size(), SKINLESION_STATUS_OK);
    // A per-image failure is reported in `statuses`; only a failed call throws.
    skinlesion_status status = skinlesion_classify_encoded_batch(
        handle_.get(), images.data(), images.size(), out.data(), statuses.data());
    bool item_failed = false;
    for (auto s : statuses) item_failed |= s != SKINLESION_STATUS_OK;
    if (status != SKINLESION_STATUS_OK && !item_failed) throw Error(status);
    return out;
  }

 private:
  struct Free {
    void operator()(skinlesion_classifier *c) const { skinlesion_classifier_free(c); }
  };
  std::unique_ptr<skinlesion_classifier, Free> handle_;
};

}  // namespace skinlesion

static std::string read_file(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot read file");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

int main(int argc, char **argv) {
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " MODEL.json IMAGE...\n";
    return 2;
  }
  std::cerr << skinlesion_disclaimer() << "\n";
  try {
    skinlesion::Classifier classifier(argv[1], skinlesion::Options().device("cpu"));
    std::vector<std::string> paths(argv + 2, argv + argc), encoded;
    for (const auto &path : paths) encoded.push_back(read_file(path));
    std::vector<skinlesion_status> statuses;
    auto predictions = classifier.classify(encoded, statuses);
    int failures = 0;
    for (size_t i = 0; i < paths.size(); i++) {
      if (statuses[i] != SKINLESION_STATUS_OK) {
        std::cerr << paths[i] << ": " << skinlesion_status_description(statuses[i]) << "\n";
        failures++;
        continue;
      }
      const auto &p = predictions[i];
      char confidence[32];
      std::snprintf(confidence, sizeof confidence, "%.6f", p.confidence);
      std::cout << paths[i] << '\t' << skinlesion_class_code(p.lesion_class) << '\t'
                << skinlesion_class_name(p.lesion_class) << '\t' << confidence << '\t'
                << (p.is_cancerous ? "cancerous" : "not cancerous") << '\t';
      const std::string reason = skinlesion_unknown_reason_code(p.unknown_reason);
      std::cout << (reason.empty() ? "-" : reason) << '\n';
    }
    return failures ? 1 : 0;
  } catch (const std::exception &e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
