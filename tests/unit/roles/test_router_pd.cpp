// PD request rewriting (bootstrap fields, batches), routing text and logprob merging.
#include <doctest/doctest.h>

#include <cstdint>
#include <set>

#include "roles/router/pd_request.h"

using namespace pdctl::router;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;
constexpr uint64_t kMaxRoom = (uint64_t{1} << 63) - 1;

std::shared_ptr<Worker> prefill(const std::string& url, std::optional<int> port) {
  return std::make_shared<Worker>(WorkerSpec{url, WorkerType::kPrefill, port}, HealthConfig{},
                                  CircuitBreakerConfig{}, t0);
}

}  // namespace

TEST_CASE("pd: the bootstrap host is the prefill URL's host") {
  CHECK(url_host("http://10.0.0.5:30001") == "10.0.0.5");
  CHECK(url_host("https://prefill-0.svc:443/") == "prefill-0.svc");
  CHECK(url_host("http://localhost") == "localhost");
  CHECK(url_host("http://[fdbd:dccd:cdd2:2001::19d]:8000") == "fdbd:dccd:cdd2:2001::19d");
  CHECK(url_host("http://host/path:x") == "host");
}

TEST_CASE("pd: a single request gets one host, port and room") {
  Rng rng(1);
  auto p = prefill("http://10.0.0.5:30001", 8998);
  json req = {{"text", "hello"}, {"sampling_params", {{"max_new_tokens", 8}}}};
  auto body = make_pd_body(ApiRoute::kGenerate, req, *p, rng);
  REQUIRE(body);
  CHECK((*body)["bootstrap_host"] == "10.0.0.5");
  CHECK((*body)["bootstrap_port"] == 8998);
  REQUIRE((*body)["bootstrap_room"].is_number_unsigned());
  CHECK((*body)["bootstrap_room"].get<uint64_t>() <= kMaxRoom);
  CHECK((*body)["text"] == "hello");
  CHECK((*body)["sampling_params"] == req["sampling_params"]);
  CHECK_FALSE(req.contains("bootstrap_room"));  // the client's body is not modified

  // No configured port: JSON null (the prefill worker's default applies).
  auto q = prefill("http://p:1", std::nullopt);
  auto nb = make_pd_body(ApiRoute::kGenerate, req, *q, rng);
  CHECK((*nb)["bootstrap_port"].is_null());
}

TEST_CASE("pd: every attempt gets a new room, always below 2^63") {
  Rng rng(2);
  auto p = prefill("http://p:1", 8998);
  json req = {{"text", "x"}};
  std::set<uint64_t> rooms;
  for (int i = 0; i < 2000; ++i) {
    uint64_t r = (*make_pd_body(ApiRoute::kGenerate, req, *p, rng))["bootstrap_room"].get<uint64_t>();
    CHECK(r <= kMaxRoom);
    rooms.insert(r);
  }
  CHECK(rooms.size() == 2000);
  // The high bit is masked off, the others are used.
  bool high_half = false;
  for (uint64_t r : rooms) high_half = high_half || r > (kMaxRoom >> 1);
  CHECK(high_half);
}

TEST_CASE("pd: batch sizes as SGLang decides them") {
  CHECK(batch_size(ApiRoute::kGenerate, {{"text", "a"}}) == std::nullopt);
  CHECK(batch_size(ApiRoute::kGenerate, {{"input_ids", {1, 2, 3}}}) == std::nullopt);
  CHECK(batch_size(ApiRoute::kGenerate, {{"input_ids", {{1, 2}, {3}}}}) == 2u);
  CHECK(batch_size(ApiRoute::kGenerate, {{"input_ids", json::array()}}) == std::nullopt);
  CHECK(batch_size(ApiRoute::kGenerate, {{"text", {"a", "b", "c"}}}) == 3u);
  CHECK(batch_size(ApiRoute::kChatCompletions, {{"messages", json::array()}}) == std::nullopt);
  CHECK(batch_size(ApiRoute::kChatCompletions, {{"n", 1}}) == std::nullopt);
  CHECK(batch_size(ApiRoute::kChatCompletions, {{"n", 4}}) == 4u);
  CHECK(batch_size(ApiRoute::kCompletions, {{"prompt", "a"}}) == std::nullopt);
  CHECK(batch_size(ApiRoute::kCompletions, {{"prompt", {"a", "b"}}}) == 2u);
  CHECK(batch_size(ApiRoute::kCompletions, {{"prompt", {{1, 2}, {3, 4}, {5}}}}) == 3u);
  CHECK(batch_size(ApiRoute::kCompletions, {{"prompt", {1, 2, 3}}}) == std::nullopt);
  CHECK(batch_size(ApiRoute::kCompletions, {{"prompt", json::array({"a"})}, {"n", 3}}) == 1u);  // n ignored
}

TEST_CASE("pd: a batch gets lists, one distinct room per item") {
  Rng rng(3);
  auto p = prefill("http://[::1]:30001", std::nullopt);
  json req = {{"input_ids", {{1, 2}, {3, 4}, {5, 6}, {7}}}};
  auto body = make_pd_body(ApiRoute::kGenerate, req, *p, rng);
  REQUIRE(body);
  CHECK((*body)["bootstrap_host"] == json({"::1", "::1", "::1", "::1"}));
  CHECK((*body)["bootstrap_port"] == json({nullptr, nullptr, nullptr, nullptr}));
  const json& rooms = (*body)["bootstrap_room"];
  REQUIRE(rooms.size() == 4);
  std::set<uint64_t> distinct;
  for (const auto& r : rooms) {
    CHECK(r.get<uint64_t>() <= kMaxRoom);
    distinct.insert(r.get<uint64_t>());
  }
  CHECK(distinct.size() == 4);

  json chat = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"n", 2}};
  auto cb = make_pd_body(ApiRoute::kChatCompletions, chat, *prefill("http://p:1", 9000), rng);
  CHECK((*cb)["bootstrap_port"] == json({9000, 9000}));
  CHECK((*cb)["bootstrap_room"].size() == 2);
}

TEST_CASE("pd: a body that is not an object is refused; client bootstrap fields are replaced") {
  Rng rng(4);
  auto p = prefill("http://p:1", 8998);
  CHECK(make_pd_body(ApiRoute::kGenerate, json::array(), *p, rng).status().code() ==
        pdctl::Errc::kInvalidArgument);
  json req = {{"text", "a"}, {"bootstrap_host", "evil"}, {"bootstrap_room", 1}};
  auto body = make_pd_body(ApiRoute::kGenerate, req, *p, rng);
  CHECK((*body)["bootstrap_host"] == "p");
}

TEST_CASE("pd: stream and logprob flags") {
  CHECK(is_streaming({{"stream", true}}));
  CHECK_FALSE(is_streaming({{"stream", false}}));
  CHECK_FALSE(is_streaming({{"text", "a"}}));
  CHECK(wants_logprobs(ApiRoute::kGenerate, {{"return_logprob", true}}));
  CHECK(wants_logprobs(ApiRoute::kGenerate, {{"return_logprob", {false, true}}}));
  CHECK_FALSE(wants_logprobs(ApiRoute::kGenerate, {{"return_logprob", false}}));
  CHECK(wants_logprobs(ApiRoute::kChatCompletions, {{"logprobs", true}}));
  CHECK_FALSE(wants_logprobs(ApiRoute::kChatCompletions, {{"logprobs", false}}));
  CHECK(wants_logprobs(ApiRoute::kCompletions, {{"logprobs", 0}}));
  CHECK_FALSE(wants_logprobs(ApiRoute::kCompletions, {{"logprobs", nullptr}}));
  CHECK_FALSE(wants_logprobs(ApiRoute::kCompletions, json::object()));
}

TEST_CASE("pd: routing text") {
  CHECK(routing_text(ApiRoute::kGenerate, {{"text", "hello world"}}) == "hello world");
  CHECK(routing_text(ApiRoute::kGenerate, {{"text", {"a b", "c"}}}) == "a b c");
  // Token ids: decimal, space-separated, a batch flattened (SGLang's extract_text_for_routing).
  CHECK(routing_text(ApiRoute::kGenerate, {{"input_ids", {101, 7, 2048}}}) == "101 7 2048");
  CHECK(routing_text(ApiRoute::kGenerate, {{"input_ids", {{1, 2}, {3}}}}) == "1 2 3");
  CHECK(routing_text(ApiRoute::kGenerate, json::object()) == "");
  CHECK(routing_text(ApiRoute::kCompletions, {{"prompt", "once upon"}}) == "once upon");
  CHECK(routing_text(ApiRoute::kCompletions, {{"prompt", {"a", "b"}}}) == "a b");
  CHECK(routing_text(ApiRoute::kCompletions, {{"prompt", {5, 6}}}) == "5 6");

  json chat = {{"messages",
                {{{"role", "system"}, {"content", "Be brief."}},
                 {{"role", "user"},
                  {"content",
                   {{{"type", "text"}, {"text", "Describe"}},
                    {{"type", "image_url"}, {"image_url", {{"url", "http://x/y.png"}}}},
                    {{"type", "text"}, {"text", "this image"}}}}},
                 {{"role", "assistant"}, {"content", "It is"}, {"reasoning_content", "thinking"}},
                 {{"role", "assistant"}, {"content", nullptr}},
                 {{"role", "tool"}, {"content", "42"}},
                 {{"role", "user"}, {"content", "And now?"}}}}};
  CHECK(routing_text(ApiRoute::kChatCompletions, chat) ==
        "Be brief. Describe this image It is thinking 42 And now?");
}

namespace {

// One input_token_logprobs entry: [logprob, token id, null] (SGLang's layout).
json lp(double v, int id) { return json::array({v, id, nullptr}); }
json with_input_logprobs(json list) {
  json meta = json::object();
  meta["input_token_logprobs"] = std::move(list);
  return json{{"meta_info", meta}};
}

}  // namespace

TEST_CASE("pd: non-stream logprob merge puts prefill's input logprobs first") {
  json pre = with_input_logprobs(json::array({lp(-0.1, 1), lp(-0.2, 2)}));
  json dec = with_input_logprobs(json::array({lp(-0.3, 3)}));
  dec["text"] = "out";
  dec["meta_info"]["output_token_logprobs"] = json::array({lp(-1.0, 9)});
  REQUIRE(prefill_input_logprobs(pre));
  CHECK(merge_logprobs(pre, dec));
  CHECK(dec["meta_info"]["input_token_logprobs"] == json::array({lp(-0.1, 1), lp(-0.2, 2), lp(-0.3, 3)}));
  CHECK(dec["meta_info"]["output_token_logprobs"] == json::array({lp(-1.0, 9)}));
  CHECK(dec["text"] == "out");

  // Decode without the field: nothing to merge (as SGLang).
  json bare = {{"text", "out"}, {"meta_info", json::object()}};
  CHECK_FALSE(merge_logprobs(pre, bare));
  CHECK_FALSE(bare["meta_info"].contains("input_token_logprobs"));

  // A batch: item by item.
  json pre_b = json::array({pre, with_input_logprobs(json::array({lp(-0.5, 5)}))});
  json dec_b = json::array({with_input_logprobs(json::array()), with_input_logprobs(json::array({lp(-0.6, 6)}))});
  CHECK(merge_logprobs(pre_b, dec_b));
  CHECK(dec_b[0]["meta_info"]["input_token_logprobs"].size() == 2);
  CHECK(dec_b[1]["meta_info"]["input_token_logprobs"] == json::array({lp(-0.5, 5), lp(-0.6, 6)}));
  // Batches of different sizes are left alone.
  json dec_short = json::array({with_input_logprobs(json::array())});
  CHECK_FALSE(merge_logprobs(pre_b, dec_short));
}

TEST_CASE("pd: streamed logprob merge applies to every chunk that carries them") {
  json pre_lp = json::array({lp(-0.1, 1)});
  std::string chunk1 = R"({"text":"a","meta_info":{"input_token_logprobs":[[-0.3,3,null]]}})";
  auto m1 = merge_stream_logprobs(pre_lp, chunk1);
  REQUIRE(m1);
  CHECK(json::parse(*m1)["meta_info"]["input_token_logprobs"] == json::array({lp(-0.1, 1), lp(-0.3, 3)}));
  std::string chunk2 = R"({"text":"ab","meta_info":{"input_token_logprobs":[[-0.3,3,null]]}})";
  auto m2 = merge_stream_logprobs(pre_lp, chunk2);
  REQUIRE(m2);
  CHECK(json::parse(*m2)["meta_info"]["input_token_logprobs"].size() == 2);
  CHECK(json::parse(*m2)["text"] == "ab");
  // Passed through unchanged: [DONE], not JSON, nothing to merge.
  CHECK_FALSE(merge_stream_logprobs(pre_lp, "[DONE]"));
  CHECK_FALSE(merge_stream_logprobs(pre_lp, "{not json"));
  CHECK_FALSE(merge_stream_logprobs(pre_lp, R"({"text":"a","meta_info":{}})"));
  CHECK_FALSE(merge_stream_logprobs(json(nullptr), chunk1));
}

TEST_CASE("pd: routes by path") {
  CHECK(route_from_path("/generate") == ApiRoute::kGenerate);
  CHECK(route_from_path("/v1/chat/completions") == ApiRoute::kChatCompletions);
  CHECK(route_from_path("/v1/completions") == ApiRoute::kCompletions);
  CHECK_FALSE(route_from_path("/v1/embeddings"));
  CHECK(std::string(route_path(ApiRoute::kCompletions)) == "/v1/completions");
}
