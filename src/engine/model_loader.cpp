#include "engine/model_loader.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/dummy_model.h"
#include "engine/gguf.h"
#include "engine/safetensors.h"

namespace pdctl::engine {
namespace fs = std::filesystem;

namespace {

Result<nlohmann::json> read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::io(fmt::format("{}: cannot open", path));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::corrupt(fmt::format("{}: not valid JSON", path));
  return j;
}

std::optional<DType> dtype_of_ggml(uint32_t t) {
  switch (static_cast<GgmlType>(t)) {
    case GgmlType::kF32: return DType::kF32;
    case GgmlType::kF16: return DType::kF16;
    case GgmlType::kBF16: return DType::kBF16;
    case GgmlType::kQ8_0: return DType::kQ8_0;
    default: return std::nullopt;
  }
}

}  // namespace

Result<LoadedModel> load_gguf_model(const std::string& path) {
  PDCTL_ASSIGN_OR_RETURN(GgufFile g, GgufFile::open(path));
  auto file = std::make_shared<GgufFile>(std::move(g));
  LoadedModel m;
  PDCTL_ASSIGN_OR_RETURN(m.config, config_from_gguf(*file));
  // The GGUF directory as raw tensors: dims reversed to PyTorch order.
  std::map<std::string, RawTensor> raw;
  for (const GgufTensorInfo& t : file->tensors()) {
    RawTensor r;
    r.file = path;
    r.name = t.name;
    r.dtype = dtype_of_ggml(t.type);
    r.dtype_name = ggml_type_name(t.type);
    r.shape.assign(t.dims.rbegin(), t.dims.rend());
    r.data = t.data;
    raw.emplace(t.name, std::move(r));
  }
  TensorLookup lookup = [&raw](const std::string& n) -> const RawTensor* {
    auto it = raw.find(n);
    return it == raw.end() ? nullptr : &it->second;
  };
  PDCTL_RETURN_IF_ERROR(bind_weights(m.config, lookup, gguf_tensor_name, path, m.weights));
  m.source = path;
  m.format = "gguf";
  m.storage.push_back(file);
  return m;
}

Result<LoadedModel> load_hf_model(const std::string& dir) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  PDCTL_ASSIGN_OR_RETURN(nlohmann::json config, read_json(config_path));
  nlohmann::json gen;
  const std::string gen_path = (fs::path(dir) / "generation_config.json").string();
  if (fs::exists(gen_path)) {
    PDCTL_ASSIGN_OR_RETURN(gen, read_json(gen_path));
  }
  LoadedModel m;
  PDCTL_ASSIGN_OR_RETURN(m.config, config_from_hf(config, gen.is_null() ? nullptr : &gen, config_path));

  // The shards: one file, or those an index names.
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;  // tensor -> shard
  const std::string single = (fs::path(dir) / "model.safetensors").string();
  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  if (fs::exists(index_path)) {
    PDCTL_ASSIGN_OR_RETURN(nlohmann::json index, read_json(index_path));
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return Status::corrupt(fmt::format("{}: key 'weight_map' is missing or not an object", index_path));
    }
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        return Status::corrupt(fmt::format("{}: key 'weight_map.{}' is not a file name", index_path, it.key()));
      }
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == ".." ) {
        return Status::corrupt(fmt::format("{}: shard '{}' is not a file in the directory", index_path, shard));
      }
      weight_map[it.key()] = shard;
      if (std::find(shard_names.begin(), shard_names.end(), shard) == shard_names.end()) shard_names.push_back(shard);
    }
  } else if (fs::exists(single)) {
    shard_names.push_back("model.safetensors");
  } else {
    return Status::not_found(fmt::format("{}: neither model.safetensors nor model.safetensors.index.json", dir));
  }
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  for (const std::string& s : shard_names) {
    PDCTL_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open((fs::path(dir) / s).string()));
    shards[s] = std::make_shared<SafetensorsFile>(std::move(f));
  }
  TensorLookup lookup = [&](const std::string& n) -> const RawTensor* {
    if (weight_map.empty()) return shards.begin()->second->find(n);
    auto it = weight_map.find(n);
    if (it == weight_map.end()) return nullptr;
    return shards[it->second]->find(n);
  };
  PDCTL_RETURN_IF_ERROR(bind_weights(m.config, lookup, hf_tensor_name, dir, m.weights));
  m.source = dir;
  m.format = "safetensors";
  for (auto& [_, f] : shards) m.storage.push_back(f);
  return m;
}

Result<LoadedModel> load_model(const LoadOptions& o) {
  const std::string& p = o.model_path;
  if (p.empty()) return Status::invalid_argument("--model-path is required");
  Result<LoadedModel> r = Status::internal("unreachable");
  if (o.load_format == "dummy") {
    r = make_dummy_model(p, o.dtype, o.seed);
  } else if (o.load_format == "gguf") {
    r = load_gguf_model(p);
  } else if (o.load_format == "safetensors") {
    r = load_hf_model(p);
  } else if (o.load_format == "auto") {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      r = load_hf_model(p);
    } else if (fs::is_regular_file(p, ec)) {
      r = load_gguf_model(p);
    } else {
      return Status::not_found(fmt::format("{}: no such file or directory (a dummy preset needs --load-format dummy)", p));
    }
  } else {
    return Status::invalid_argument(fmt::format("unknown --load-format '{}'", o.load_format));
  }
  if (!r.has_value()) return std::move(r).status().with_context("loading " + p);
  return r;
}

}  // namespace pdctl::engine
