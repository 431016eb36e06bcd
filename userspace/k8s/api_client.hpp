// A minimal Kubernetes API client over libcurl: JSON GETs and streaming GETs (watch), always over
// verified TLS, with bearer-token rotation, connect and stall timeouts and prompt cancellation.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "k8s/kube_config.hpp"
#include "lib/result.hpp"

namespace kxlb::k8s {

struct ApiClientOptions {
    std::chrono::milliseconds connect_timeout{5000};   // TCP + TLS handshake
    std::chrono::milliseconds request_timeout{60000};  // a whole get() (not stream())
    // No byte received for this long (headers or body, get() and stream()): the connection counts as
    // dropped (error ETIMEDOUT). Keep it above the server's bookmark interval (about a minute).
    std::chrono::milliseconds stall_timeout{120000};
    std::size_t max_body_bytes = std::size_t{1} << 30;  // get() bodies and single stream lines
};

// The outcome of a request that reached the server.
// s percent-encoded for a URL query value: letters, digits and "-._~" kept, every other byte as %XX.
std::string query_escape(std::string_view s);

struct HttpResponse {
    long status = 0;
    nlohmann::json body;  // get(): the parsed body; stream(), status != 200: the parsed error body
    std::string message;  // status != 2xx: the Status object's message, or the start of the raw body
    // "HTTP 410: too old resource version" (for log lines and errors).
    std::string describe() const;
    // The Kubernetes Status code in the body if there is one (watch ERROR events carry it), else `status`.
    long status_code() const;
};

// One apiserver connection configuration. Thread-safe: each call uses its own connection, so list
// and watch threads can share one client.
class ApiClient {
public:
    // Errors: the configuration cannot be used (no server). Initializes libcurl once per process.
    static Result<std::shared_ptr<ApiClient>> create(KubeConfig cfg, ApiClientOptions opts = {});

    // GET `path` ("/api/v1/services?limit=500": path and query, starting with '/'). Any HTTP status is a
    // response (check status); a 2xx body must be JSON. A 401 re-reads the token file once and retries
    // if the token changed. Errors (Error::code): ETIMEDOUT (connect, stall or request timeout),
    // ECANCELED (`stop` became true; noticed within ~50 ms), ECONNREFUSED, EPROTO (TLS, including a
    // server certificate that does not verify), ECONNRESET (connection lost), EBADMSG (2xx body is not
    // JSON), EMSGSIZE (body above max_body_bytes), EIO (anything else). Messages name the URL.
    Result<HttpResponse> get(const std::string& path, const std::atomic<bool>* stop = nullptr) const;

    // Streaming GET (watch): with status 200, calls on_line for every non-empty line as it arrives (the
    // last one even without its '\n') and returns {status 200} when the server ends the response.
    // Other statuses return the response without calling on_line. on_line returning false ends the
    // request with ECANCELED. Errors as get() (no request timeout; the stall timeout applies).
    Result<HttpResponse> stream(const std::string& path, const std::function<bool(std::string_view)>& on_line,
                                const std::atomic<bool>* stop = nullptr) const;

    const KubeConfig& config() const { return cfg_; }
    const ApiClientOptions& options() const { return opts_; }

private:
    ApiClient(KubeConfig cfg, ApiClientOptions opts) : cfg_(std::move(cfg)), opts_(opts) {}
    struct Call;
    Result<HttpResponse> perform(const std::string& path, const std::function<bool(std::string_view)>* on_line,
                                 const std::atomic<bool>* stop) const;
    Result<HttpResponse> perform_once(const std::string& path, const std::function<bool(std::string_view)>* on_line,
                                      const std::atomic<bool>* stop, const std::string& token) const;

    KubeConfig cfg_;
    ApiClientOptions opts_;
};

}  // namespace kxlb::k8s
