// ApiClient: libcurl (multi interface, polled every 50 ms so that cancellation and stall detection
// are prompt) with in-memory PEM credentials and line-splitting for watch streams.
#include "k8s/api_client.hpp"

#include <curl/curl.h>

#include <cctype>
#include <cerrno>
#include <mutex>
#include <utility>

namespace kxlb::k8s {

std::string query_escape(std::string_view s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string q;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') q.push_back(static_cast<char>(c));
        else q += {'%', kHex[c >> 4], kHex[c & 15]};
    }
    return q;
}
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPollInterval = std::chrono::milliseconds(50);
constexpr std::size_t kMessageMax = 512;

int errno_of(CURLcode rc) {
    switch (rc) {
        case CURLE_OPERATION_TIMEDOUT: return ETIMEDOUT;
        case CURLE_ABORTED_BY_CALLBACK: return ECANCELED;
        case CURLE_COULDNT_CONNECT: return ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST: return EHOSTUNREACH;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_ISSUER_ERROR: return EPROTO;
        case CURLE_PARTIAL_FILE:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM: return ECONNRESET;
        default: return EIO;
    }
}

struct CurlEasyDeleter {
    void operator()(CURL* e) const { curl_easy_cleanup(e); }
};
struct CurlMultiDeleter {
    void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct SlistDeleter {
    void operator()(curl_slist* s) const { curl_slist_free_all(s); }
};

}  // namespace

std::string HttpResponse::describe() const {
    std::string s = "HTTP " + std::to_string(status);
    if (!message.empty()) s += ": " + message;
    return s;
}

long HttpResponse::status_code() const {
    if (body.is_object()) {
        const auto it = body.find("code");
        if (it != body.end() && it->is_number_integer()) return it->get<long>();
    }
    return status;
}

// State shared with the curl callbacks of one request.
struct ApiClient::Call {
    const ApiClientOptions* opts = nullptr;
    const std::function<bool(std::string_view)>* on_line = nullptr;  // null: collect the body
    const std::atomic<bool>* stop = nullptr;
    CURL* easy = nullptr;
    long status = 0;
    std::string buf;  // the body (get, or a stream's error body), or a stream's partial line
    Clock::time_point last_byte = Clock::now();
    enum class Abort { None, Stop, Consumer, TooLarge } abort = Abort::None;

    bool streaming() const { return on_line != nullptr && status == 200; }

    static size_t on_header(char*, size_t size, size_t n, void* p) {
        static_cast<Call*>(p)->last_byte = Clock::now();
        return size * n;
    }

    static size_t on_data(char* data, size_t size, size_t n, void* p) {
        auto* c = static_cast<Call*>(p);
        const size_t len = size * n;
        c->last_byte = Clock::now();
        if (c->status == 0) curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
        if (c->buf.size() + len > c->opts->max_body_bytes) {
            c->abort = Abort::TooLarge;
            return 0;
        }
        c->buf.append(data, len);
        if (!c->streaming()) return len;
        size_t start = 0;
        for (size_t nl; (nl = c->buf.find('\n', start)) != std::string::npos; start = nl + 1) {
            std::string_view line(c->buf.data() + start, nl - start);
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            if (line.empty()) continue;
            if (!(*c->on_line)(line)) {
                c->abort = Abort::Consumer;
                return 0;
            }
        }
        c->buf.erase(0, start);
        return len;
    }

    static int on_progress(void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
        auto* c = static_cast<Call*>(p);
        if (c->stop && c->stop->load()) {
            c->abort = Abort::Stop;
            return 1;
        }
        return 0;
    }
};

Result<std::shared_ptr<ApiClient>> ApiClient::create(KubeConfig cfg, ApiClientOptions opts) {
    static std::once_flag once;
    static CURLcode init_rc = CURLE_OK;
    std::call_once(once, [] { init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
    if (init_rc != CURLE_OK) return Error{EIO, std::string("curl_global_init: ") + curl_easy_strerror(init_rc)};
    if (cfg.server.empty()) return Error::invalid("API client: no server URL");
    if (cfg.client_cert_pem.empty() != cfg.client_key_pem.empty())
        return Error::invalid("API client: a client certificate needs its key and vice versa");
    return std::shared_ptr<ApiClient>(new ApiClient(std::move(cfg), opts));
}

Result<HttpResponse> ApiClient::get(const std::string& path, const std::atomic<bool>* stop) const {
    return perform(path, nullptr, stop);
}

Result<HttpResponse> ApiClient::stream(const std::string& path, const std::function<bool(std::string_view)>& on_line,
                                       const std::atomic<bool>* stop) const {
    return perform(path, &on_line, stop);
}

Result<HttpResponse> ApiClient::perform(const std::string& path, const std::function<bool(std::string_view)>* on_line,
                                        const std::atomic<bool>* stop) const {
    if (path.empty() || path.front() != '/') return Error::invalid("API path \"" + path + "\" does not start with '/'");
    for (int attempt = 0;; ++attempt) {
        std::string token = cfg_.token;
        if (cfg_.token_file) {
            auto t = cfg_.token_file->token();
            if (!t) return t.error();
            token = std::move(t).value();
        }
        auto r = perform_once(path, on_line, stop, token);
        // A rejected token may have been rotated: re-read it once, and retry only if it changed.
        if (r && r->status == 401 && attempt == 0 && cfg_.token_file && cfg_.token_file->invalidate()) continue;
        return r;
    }
}

Result<HttpResponse> ApiClient::perform_once(const std::string& path,
                                             const std::function<bool(std::string_view)>* on_line,
                                             const std::atomic<bool>* stop, const std::string& token) const {
    const std::string url = cfg_.server + path;
    const std::string what = "GET " + url;
    std::unique_ptr<CURL, CurlEasyDeleter> easy(curl_easy_init());
    std::unique_ptr<CURLM, CurlMultiDeleter> multi(curl_multi_init());
    if (!easy || !multi) return Error{ENOMEM, what + ": cannot create a curl handle"};

    Call call;
    call.opts = &opts_;
    call.on_line = on_line;
    call.stop = stop;
    call.easy = easy.get();

    curl_slist* h = curl_slist_append(nullptr, "Accept: application/json");
    if (!token.empty())
        if (auto* with_token = curl_slist_append(h, ("Authorization: Bearer " + token).c_str())) h = with_token;
    std::unique_ptr<curl_slist, SlistDeleter> headers(h);
    char errbuf[CURL_ERROR_SIZE] = {0};
    auto* e = easy.get();
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(e, CURLOPT_USERAGENT, "kxlb/" KXLB_VERSION);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");  // gzip when the server offers it
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(opts_.connect_timeout.count()));
    if (!on_line) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(opts_.request_timeout.count()));
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 10L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_blob ca{const_cast<char*>(cfg_.ca_pem.data()), cfg_.ca_pem.size(), CURL_BLOB_NOCOPY};
    if (!cfg_.ca_pem.empty()) curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &ca);
    curl_blob cert{const_cast<char*>(cfg_.client_cert_pem.data()), cfg_.client_cert_pem.size(), CURL_BLOB_NOCOPY};
    curl_blob key{const_cast<char*>(cfg_.client_key_pem.data()), cfg_.client_key_pem.size(), CURL_BLOB_NOCOPY};
    if (!cfg_.client_cert_pem.empty()) {
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cert);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &key);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Call::on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &call);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Call::on_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &call);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, &Call::on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, &call);

    if (curl_multi_add_handle(multi.get(), e) != CURLM_OK) return Error{EIO, what + ": curl_multi_add_handle failed"};
    bool stalled = false;
    CURLcode rc = CURLE_OK;
    for (;;) {
        int running = 0;
        if (const auto mc = curl_multi_perform(multi.get(), &running); mc != CURLM_OK) {
            curl_multi_remove_handle(multi.get(), e);
            return Error{EIO, what + ": " + curl_multi_strerror(mc)};
        }
        if (running == 0) {
            int left = 0;
            rc = CURLE_GOT_NOTHING;
            while (CURLMsg* msg = curl_multi_info_read(multi.get(), &left))
                if (msg->msg == CURLMSG_DONE) rc = msg->data.result;
            break;
        }
        if (stop && stop->load()) {
            call.abort = Call::Abort::Stop;
            break;
        }
        if (Clock::now() - call.last_byte > opts_.stall_timeout) {
            stalled = true;
            break;
        }
        curl_multi_poll(multi.get(), nullptr, 0, static_cast<int>(kPollInterval.count()), nullptr);
    }
    curl_multi_remove_handle(multi.get(), e);

    if (call.abort == Call::Abort::Stop) return Error{ECANCELED, what + ": cancelled"};
    if (call.abort == Call::Abort::Consumer) return Error{ECANCELED, what + ": ended by the consumer"};
    if (call.abort == Call::Abort::TooLarge)
        return Error{EMSGSIZE, what + ": response larger than " + std::to_string(opts_.max_body_bytes) + " bytes"};
    if (stalled)
        return Error{ETIMEDOUT, what + ": no data for " + std::to_string(opts_.stall_timeout.count()) +
                                    " ms; connection considered dropped"};
    if (rc != CURLE_OK) {
        std::string msg = what + ": " + curl_easy_strerror(rc);
        if (errbuf[0] != '\0') msg += std::string(" (") + errbuf + ")";
        return Error{errno_of(rc), std::move(msg)};
    }

    HttpResponse resp;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp.status);
    if (on_line && resp.status == 200) {
        if (!call.buf.empty() && !(*on_line)(call.buf)) return Error{ECANCELED, what + ": ended by the consumer"};
        return resp;
    }
    resp.body = nlohmann::json::parse(call.buf, nullptr, /*allow_exceptions=*/false);
    const bool ok = resp.status >= 200 && resp.status < 300;
    if (resp.body.is_discarded()) {
        if (ok) return Error{EBADMSG, what + ": HTTP " + std::to_string(resp.status) + " body is not JSON"};
        resp.body = nullptr;
        resp.message = call.buf.substr(0, kMessageMax);
    } else if (!ok && resp.body.is_object() && resp.body.contains("message") && resp.body["message"].is_string()) {
        resp.message = resp.body["message"].get<std::string>();
    }
    return resp;
}

}  // namespace kxlb::k8s
