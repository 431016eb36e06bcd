// How kxlb reaches the Kubernetes API: the server URL, the CA and client credentials, from the
// in-cluster service account or a kubeconfig file, and the bearer token source (re-read on rotation).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "lib/result.hpp"

namespace kxlb::k8s {

// Re-reads a bearer token file when it may have changed: at most every `refresh` (kubelet rotates
// projected service-account tokens well before they expire) and whenever a request was rejected
// with 401 (invalidate()). Thread-safe.
class TokenFile {
public:
    explicit TokenFile(std::string path, std::chrono::milliseconds refresh = std::chrono::seconds(60));

    // The current token (trailing whitespace removed). Error if the file cannot be read or is empty;
    // a failed re-read keeps returning the error rather than a token known to be possibly stale.
    Result<std::string> token();
    // Forces the next token() to re-read the file. Returns true if the file's content now differs
    // from the token handed out before (so retrying a rejected request makes sense).
    bool invalidate();
    const std::string& path() const { return path_; }

private:
    Result<std::string> read_locked();

    const std::string path_;
    const std::chrono::milliseconds refresh_;
    std::mutex mu_;
    std::optional<std::string> cached_;
    std::chrono::steady_clock::time_point read_at_{};
};

// Everything needed to talk to one apiserver. TLS is always verified: there is no way to turn it off.
struct KubeConfig {
    std::string server;                     // "https://10.96.0.1:443", "https://[fd00::1]:6443" (no trailing '/')
    std::string ca_pem;                     // CA bundle the server certificate is verified against; empty: system CAs
    std::string client_cert_pem;            // client certificate (mutual TLS); empty: none
    std::string client_key_pem;             // its private key; set iff client_cert_pem is
    std::string token;                      // static bearer token; empty: none (or token_file)
    std::shared_ptr<TokenFile> token_file;  // bearer token re-read from a file; null: none
    std::string origin;                     // where this came from, for messages ("in-cluster", a path)
};

// Where the in-cluster configuration is read from. Tests point `root` at a temporary directory and
// pass their own environment.
struct InClusterSource {
    std::string root = "/";  // prefix of /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}
    // Environment lookup (KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT); null: getenv.
    std::function<std::optional<std::string>(const std::string&)> getenv;
    std::chrono::milliseconds token_refresh = std::chrono::seconds(60);
};

// The pod's service account: server from KUBERNETES_SERVICE_HOST/PORT (an IPv6 host is bracketed),
// CA from ca.crt, token from the token file (re-read on rotation). Errors name the missing or
// invalid piece.
Result<KubeConfig> load_in_cluster(const InClusterSource& src = {});

// A kubeconfig file's current context: cluster server and CA (certificate-authority path, relative
// to the file's directory, or certificate-authority-data), user client certificate/key (path or
// -data) and token/tokenFile. Refused (with the reason): a missing or unknown context, cluster or
// user, a non-https server, insecure-skip-tls-verify: true, exec/auth-provider/basic-auth users,
// both a path and inline data for the same item, a certificate without its key, unreadable files,
// bad base64, PEM data that is not PEM.
Result<KubeConfig> load_kubeconfig(const std::string& path,
                                   std::chrono::milliseconds token_refresh = std::chrono::seconds(60));
// The same from text; `dir` resolves relative paths, `origin` names the document in messages.
Result<KubeConfig> parse_kubeconfig(const std::string& text, const std::string& dir, const std::string& origin,
                                    std::chrono::milliseconds token_refresh = std::chrono::seconds(60));

}  // namespace kxlb::k8s
