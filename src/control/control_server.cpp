// The HTTP transport of the control endpoint: binding, the token check, threads.
#include "micromodels/control/control_server.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <variant>

#include <httplib.h>
#include <strings.h>
#include <sys/socket.h>

#include "control_routes.hpp"
#include "dashboard.hpp"
#include "listen_address.hpp"
#include "preview.hpp"
#include "status_sampler.hpp"
#include "status_stream.hpp"

namespace micromodels {

namespace {

// Compares in time independent of where the texts differ, so that a client cannot find the
// token a character at a time by timing the answers.
bool same_secret(const std::string& given, const std::string& expected) {
  unsigned char difference = given.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < given.size(); ++i) {
    difference |= static_cast<unsigned char>(given[i] ^ expected[i % expected.size()]);
  }
  return difference == 0;
}

void set_common_headers(httplib::Response& response) {
  // The dashboard runs only its own files (and shows preview frames it made blobs of), and no
  // other site may frame it.
  response.set_header("Content-Security-Policy",
                      "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'");
  response.set_header("X-Content-Type-Options", "nosniff");
  response.set_header("Cache-Control", "no-store");
}

void send(const detail::Reply& reply, httplib::Response& response) {
  response.status = reply.status;
  set_common_headers(response);
  if (!reply.allow.empty()) response.set_header("Allow", reply.allow);
  response.set_content(reply.body, reply.content_type.c_str());
}

// GET /preview/FIELD: a stream of JPEG parts, written on this client's own thread until the
// run ends, the endpoint stops or the client goes away (a write fails).
void stream_preview(detail::Previews& previews, const httplib::Request& request,
                    httplib::Response& response) {
  auto opened = previews.open(request.path, request.params);
  if (const auto* reply = std::get_if<detail::Reply>(&opened)) {
    send(*reply, response);
    return;
  }
  std::shared_ptr<detail::PreviewStream> stream =
      std::move(std::get<std::unique_ptr<detail::PreviewStream>>(opened));
  set_common_headers(response);
  response.set_header("X-Preview-Stage", stream->stage());
  response.set_header("X-Preview-Image-Fields", stream->image_fields());
  response.set_content_provider(
      detail::Previews::kContentType, [stream](std::size_t, httplib::DataSink& sink) {
        const std::string part = stream->next_part([&sink] { return sink.is_writable(); });
        if (part.empty()) {
          sink.done();
          return true;
        }
        return sink.write(part.data(), part.size());
      });
}

// GET /status/stream: a /status document every 750 ms as server-sent events, on this client's
// own thread, until the client goes away or the endpoint stops (after the run's last document
// when the run has ended).
void stream_status(detail::StatusStreams& streams, httplib::Response& response) {
  if (!streams.claim()) {
    send(detail::error_reply(503, std::to_string(detail::StatusStreams::kMaxClients) +
                                      " status streams are open, the most this endpoint serves at "
                                      "once; ask GET /status instead"),
         response);
    return;
  }
  // Gives the place back when httplib is done with the response.
  struct Place {
    explicit Place(detail::StatusStreams& s) : streams(s) {}
    ~Place() { streams.release(); }
    Place(const Place&) = delete;
    Place& operator=(const Place&) = delete;
    detail::StatusStreams& streams;
    detail::StatusStreams::Cursor cursor;
  };
  auto place = std::make_shared<Place>(streams);
  set_common_headers(response);
  response.set_content_provider("text/event-stream", [place](std::size_t, httplib::DataSink& sink) {
    const std::string event =
        place->streams.next_event(place->cursor, [&sink] { return sink.is_writable(); });
    if (event.empty()) {
      sink.done();
      return true;
    }
    return sink.write(event.data(), event.size());
  });
}

}  // namespace

struct ControlServer::State {
  State(Run& r, ControlOptions o)
      : run(r),
        options(std::move(o)),
        sampler([&r] { return r.metrics(); }, options.sample_period_s, options.rate_window_s,
                options.inputs, options.broker),
        routes(r, sampler),
        previews(r),
        status_streams(sampler) {}

  // Unhandled lets the request go on to routing; a refused one is answered here. The
  // dashboard's own files (the same for every run, no data of it) need no token: the page
  // asks for the token when /status answers 401.
  httplib::Server::HandlerResponse check_token(const httplib::Request& request,
                                               httplib::Response& response) const {
    if (options.token.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if ((request.method == "GET" || request.method == "HEAD") &&
        detail::dashboard_file(request.path) != nullptr) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    constexpr std::string_view kBearer = "Bearer ";
    const std::string header = request.get_header_value("Authorization");
    std::string message;
    if (header.empty()) {
      message =
          "this endpoint needs a token: send 'Authorization: Bearer TOKEN' (micromodels "
          "ctl and top take --token or MICROMODELS_TOKEN)";
    } else if (header.size() < kBearer.size() ||
               ::strncasecmp(header.c_str(), kBearer.data(), kBearer.size()) != 0 ||
               !same_secret(header.substr(kBearer.size()), options.token)) {
      message = "wrong token in the Authorization header";
    } else {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    send(detail::error_reply(401, message), response);
    response.set_header("WWW-Authenticate", "Bearer realm=\"micromodels\"");
    return httplib::Server::HandlerResponse::Handled;
  }

  Run& run;
  ControlOptions options;
  detail::StatusSampler sampler;
  detail::ControlRoutes routes;
  detail::Previews previews;
  detail::StatusStreams status_streams;
  httplib::Server server;
  std::string host;
  int port = 0;
  std::thread thread;
};

void check_control_options(const ControlOptions& options) {
  const detail::ListenAddress address = detail::parse_listen_address(options.listen);
  if (!address.loopback && options.token.empty()) {
    throw std::invalid_argument(
        "--listen " + options.listen +
        ": a control endpoint reachable from other machines needs a token; give one with "
        "--token TEXT or the environment variable MICROMODELS_TOKEN, or listen on 127.0.0.1");
  }
}

void probe_control_options(const ControlOptions& options) {
  check_control_options(options);
  detail::probe_listen_address(detail::parse_listen_address(options.listen));
}

ControlServer::ControlServer(Run& run, ControlOptions options) {
  check_control_options(options);
  const detail::ListenAddress address = detail::parse_listen_address(options.listen);
  state_ = std::make_unique<State>(run, std::move(options));
  State& state = *state_;

  state.server.set_pre_routing_handler(
      [&state](const httplib::Request& request, httplib::Response& response) {
        return state.check_token(request, response);
      });
  // Every method on every path goes to the routes, which answer 404 and 405 themselves.
  const auto dispatch = [&state](const httplib::Request& request, httplib::Response& response) {
    send(state.routes.handle(request.method, request.path, request.body), response);
  };
  // Each stream (a preview, a status stream) holds a thread of the pool while it plays: the pool
  // has room for the most streams at once beside httplib's usual 8 threads for every other route.
  state.server.new_task_queue = [] {
    return new httplib::ThreadPool(detail::Previews::kMaxClients +
                                   detail::StatusStreams::kMaxClients + 8);
  };
  state.server.Get("/status/stream", [&state](const httplib::Request&, httplib::Response& response) {
    stream_status(state.status_streams, response);
  });
  state.server.Get(R"(/preview(/.*)?)",
                   [&state](const httplib::Request& request, httplib::Response& response) {
                     stream_preview(state.previews, request, response);
                   });
  const std::string any = ".*";
  state.server.Get(any, dispatch)
      .Post(any, dispatch)
      .Put(any, dispatch)
      .Patch(any, dispatch)
      .Delete(any, dispatch)
      .Options(any, dispatch);
  state.server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& response, std::exception_ptr error) {
        std::string message = "internal error";
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          message += std::string(": ") + e.what();
        } catch (...) {
        }
        send(detail::error_reply(500, message), response);
      });
  // What httplib refuses before a route sees it (a POST without Content-Length, a body over the
  // limit, a malformed request) still gets the endpoint's JSON error, not an empty body.
  state.server.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request&, httplib::Response& response) {
        if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        std::string message = "the request could not be read";
        if (response.status == 400) {
          message += "; send a JSON body with a Content-Length header";
        } else if (response.status == 413) {
          message = "the request body is over 1 MiB";
        }
        send(detail::error_reply(response.status, message), response);
        return httplib::Server::HandlerResponse::Handled;
      }));
  // httplib's default also sets SO_REUSEPORT, which would let a second run bind the same port
  // and share the requests at random with the first: only SO_REUSEADDR here.
  state.server.set_socket_options([](int socket) {
    const int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  state.server.set_payload_max_length(1 << 20);
  // Short, so that stopping does not wait long for an idle keep-alive connection.
  state.server.set_keep_alive_timeout(1);

  state.host = address.host;
  errno = 0;
  if (address.port == 0) {
    state.port = state.server.bind_to_any_port(address.host);
  } else {
    state.port = state.server.bind_to_port(address.host, address.port) ? address.port : -1;
  }
  if (state.port <= 0) {
    const int failure = errno;
    const std::string reason = failure != 0 ? std::strerror(failure) : "cannot bind";
    throw std::runtime_error("control endpoint: cannot listen on " + state.options.listen + ": " +
                             reason + detail::listen_advice(failure));
  }
  state.thread = std::thread([&state] { state.server.listen_after_bind(); });
  // stop() only takes effect once the server runs: a server destroyed sooner would never end.
  while (!state.server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

ControlServer::~ControlServer() {
  // The streams end, so that stopping does not wait for them; a status stream of a run that has
  // ended (or failed) first gets its final figures.
  bool ended = false;
  try {
    ended = state_->run.wait_for(0);
  } catch (...) {
    ended = true;  // it failed
  }
  nlohmann::ordered_json last;
  if (ended) {
    try {
      last = state_->sampler.status(state_->run.metrics(), /*ended=*/true);
    } catch (const std::exception&) {
      // No figures to give: the streams just end.
    }
  }
  state_->previews.stop();
  state_->status_streams.stop(last);
  state_->server.stop();
  state_->thread.join();
}

std::string ControlServer::url() const { return detail::http_url(state_->host, state_->port); }

int ControlServer::port() const { return state_->port; }

}  // namespace micromodels
