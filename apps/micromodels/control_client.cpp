#include "control_client.hpp"

#include <regex>

#include <httplib.h>
#include <netdb.h>

namespace micromodels::cli {

namespace {

// A swap loads a model before it answers, which may take a while; a status answers at once.
constexpr int kConnectTimeoutS = 3;
constexpr int kGetTimeoutS = 10;
constexpr int kPostTimeoutS = 300;

httplib::Client make_client(const std::string& url, const std::string& token, int read_timeout_s) {
  httplib::Client client(url);
  client.set_connection_timeout(kConnectTimeoutS);
  client.set_read_timeout(read_timeout_s);
  if (!token.empty()) client.set_bearer_token_auth(token);
  return client;
}

// The host of "http://HOST:PORT", without the brackets of an IPv6 address.
std::string host_of(const std::string& url) {
  std::string host = url.substr(url.find("://") + 3);
  host = host.substr(0, host.rfind(':'));
  if (host.starts_with('[')) host = host.substr(1, host.size() - 2);
  return host;
}

// Why a connection failed: a name that does not resolve, or nothing listening there.
std::string connection_failure(const std::string& url) {
  const std::string host = host_of(url);
  addrinfo* found = nullptr;
  const int resolved = ::getaddrinfo(host.c_str(), nullptr, nullptr, &found);
  if (found != nullptr) ::freeaddrinfo(found);
  if (resolved != 0) return "no address found for host '" + host + "': " + gai_strerror(resolved);
  return "connection refused";
}

ControlReply reply_of(const httplib::Result& result, const std::string& url) {
  if (!result) {
    const httplib::Error error = result.error();
    std::string why = httplib::to_string(error);
    if (error == httplib::Error::Connection) why = connection_failure(url);
    throw Unreachable("no control endpoint answered at " + url + " (" + why +
                      "): is the `micromodels run --listen ...` still running, and is this the "
                      "URL it printed as 'control: ...'?");
  }
  return {.status = result->status, .body = result->body};
}

}  // namespace

std::string ControlReply::error_message() const {
  const auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_object() && json.contains("error") && json["error"].is_string()) {
    return json["error"].get<std::string>();
  }
  if (body.empty()) return "HTTP status " + std::to_string(status);
  // Not one of the endpoint's JSON errors: another server answered (a reverse proxy's page, a
  // web server on that port). Its first line says which, without a page of HTML.
  std::string first = body.substr(0, body.find('\n'));
  if (first.size() > 120) first = first.substr(0, 117) + "...";
  return "the server there is not a micromodels control endpoint (it answered '" + first +
         "'): check the URL, which run and worker print as 'control: http://...'";
}

ControlClient::ControlClient(std::string url, std::string token) : token_(std::move(token)) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  if (url.find("://") == std::string::npos) url = "http://" + url;
  static const std::regex kForm(R"(^https?://(\[[0-9a-fA-F:.]+\]|[^/:\[\]]+):\d+$)");
  if (!std::regex_match(url, kForm)) {
    throw std::invalid_argument("'" + url +
                                "' is not a control URL: give it as http://HOST:PORT, as "
                                "`micromodels run --listen` prints it ('control: ...')");
  }
  url_ = std::move(url);
}

ControlReply ControlClient::get(const std::string& path) const {
  httplib::Client client = make_client(url_, token_, kGetTimeoutS);
  return reply_of(client.Get(path), url_);
}

ControlReply ControlClient::post(const std::string& path, const nlohmann::json& body) const {
  httplib::Client client = make_client(url_, token_, kPostTimeoutS);
  return reply_of(client.Post(path, body.dump(), "application/json"), url_);
}

}  // namespace micromodels::cli
