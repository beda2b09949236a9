#pragma once
// (method, path pattern) -> handler id. Patterns are literal segments and parameters:
// "/workers/{url}" (one segment) or "/files/{rest...}" (the rest of the path, slashes
// included; last segment only). Parameter values are percent-decoded.
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pdctl::net {

class RouteTable {
 public:
  enum class Outcome { kFound, kNotFound, kMethodNotAllowed, kBadParam };
  struct Match {
    Outcome outcome = Outcome::kNotFound;
    size_t id = 0;
    std::vector<std::pair<std::string, std::string>> params;
    std::string allow;  // kMethodNotAllowed: "GET, POST"
  };

  // Throws std::invalid_argument on a malformed pattern: routes are set up at start-up.
  void add(std::string_view method, std::string_view pattern, size_t id);

  // The first route (in registration order) whose pattern and method match `path` (the
  // raw path, before '?'). kMethodNotAllowed when only other methods match, kBadParam
  // when the matching route's parameter is badly percent-encoded.
  Match match(std::string_view method, std::string_view path) const;

 private:
  struct Segment {
    std::string text;  // literal text, or the parameter's name
    bool param = false;
    bool rest = false;
  };
  struct Route {
    std::string method;
    std::vector<Segment> segments;
    size_t id;
  };
  static bool match_segments(const std::vector<Segment>& segs, std::string_view path,
                             std::vector<std::pair<std::string, std::string>>* raw_params);

  struct StringHash {
    using is_transparent = void;  // lookups by string_view without a copy
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::vector<std::pair<std::string, size_t>>, StringHash,
                     std::equal_to<>>
      literal_;
  std::vector<Route> patterns_;
};

}  // namespace pdctl::net
