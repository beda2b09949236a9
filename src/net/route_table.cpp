#include "net/route_table.h"

#include <stdexcept>

#include "net/url.h"

namespace pdctl::net {

namespace {

void append_allow(std::string& allow, std::string_view method) {
  // Methods are few; a linear scan keeps the list free of repeats.
  size_t pos = 0;
  while (pos < allow.size()) {
    size_t end = allow.find(", ", pos);
    if (end == std::string::npos) end = allow.size();
    if (std::string_view(allow).substr(pos, end - pos) == method) return;
    pos = end + 2;
  }
  if (!allow.empty()) allow += ", ";
  allow += method;
}

}  // namespace

void RouteTable::add(std::string_view method, std::string_view pattern, size_t id) {
  if (method.empty()) throw std::invalid_argument("route without a method");
  if (pattern.empty() || pattern.front() != '/') {
    throw std::invalid_argument("route pattern must start with '/': " + std::string(pattern));
  }
  if (pattern.find('{') == std::string_view::npos) {
    literal_[std::string(pattern)].emplace_back(std::string(method), id);
    return;
  }
  Route route{std::string(method), {}, id};
  std::string_view rest = pattern.substr(1);
  while (true) {
    size_t slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    Segment s;
    if (!seg.empty() && seg.front() == '{') {
      if (seg.back() != '}' || seg.size() < 3) {
        throw std::invalid_argument("bad parameter in route pattern: " + std::string(pattern));
      }
      std::string_view name = seg.substr(1, seg.size() - 2);
      s.param = true;
      if (name.ends_with("...")) {
        name.remove_suffix(3);
        s.rest = true;
        if (slash != std::string_view::npos) {
          throw std::invalid_argument("{name...} must be the last segment: " + std::string(pattern));
        }
      }
      if (name.empty()) throw std::invalid_argument("unnamed parameter: " + std::string(pattern));
      s.text = std::string(name);
    } else {
      if (seg.find_first_of("{}") != std::string_view::npos) {
        throw std::invalid_argument("a parameter must fill a whole segment: " + std::string(pattern));
      }
      s.text = std::string(seg);
    }
    route.segments.push_back(std::move(s));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  patterns_.push_back(std::move(route));
}

bool RouteTable::match_segments(const std::vector<Segment>& segs, std::string_view path,
                                std::vector<std::pair<std::string, std::string>>* raw_params) {
  if (path.empty() || path.front() != '/') return false;
  std::string_view rest = path.substr(1);
  for (size_t i = 0; i < segs.size(); ++i) {
    const Segment& s = segs[i];
    if (s.rest) {
      if (rest.empty()) return false;
      raw_params->emplace_back(s.text, std::string(rest));
      return true;
    }
    size_t slash = rest.find('/');
    bool last = i + 1 == segs.size();
    if (last != (slash == std::string_view::npos)) return false;
    std::string_view seg = rest.substr(0, slash);
    if (s.param) {
      if (seg.empty()) return false;
      raw_params->emplace_back(s.text, std::string(seg));
    } else if (seg != s.text) {
      return false;
    }
    if (!last) rest.remove_prefix(slash + 1);
  }
  return true;
}

RouteTable::Match RouteTable::match(std::string_view method, std::string_view path) const {
  Match m;
  bool path_known = false;
  if (auto it = literal_.find(path); it != literal_.end()) {
    for (const auto& [meth, id] : it->second) {
      if (meth == method) {
        m.outcome = Outcome::kFound;
        m.id = id;
        return m;
      }
      append_allow(m.allow, meth);
    }
    path_known = true;
  }
  std::vector<std::pair<std::string, std::string>> raw;
  for (const Route& r : patterns_) {
    raw.clear();
    if (!match_segments(r.segments, path, &raw)) continue;
    if (r.method != method) {
      append_allow(m.allow, r.method);
      path_known = true;
      continue;
    }
    for (auto& [name, value] : raw) {
      auto decoded = percent_decode(value);
      if (!decoded) {
        m.outcome = Outcome::kBadParam;
        m.allow.clear();
        return m;
      }
      m.params.emplace_back(std::move(name), std::move(decoded).value());
    }
    m.outcome = Outcome::kFound;
    m.id = r.id;
    m.allow.clear();
    return m;
  }
  m.outcome = path_known ? Outcome::kMethodNotAllowed : Outcome::kNotFound;
  return m;
}

}  // namespace pdctl::net
