// KubeConfig loading: in-cluster service account and kubeconfig files, strictly validated.
#include "k8s/kube_config.hpp"

#include <yaml-cpp/yaml.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

namespace kxlb::k8s {
namespace {

constexpr std::string_view kServiceAccountDir = "var/run/secrets/kubernetes.io/serviceaccount";

Result<std::string> read_file(const std::string& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Error::from_errno(errno ? errno : ENOENT, "reading " + std::string(what) + " " + path);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) return Error::from_errno(EIO, "reading " + std::string(what) + " " + path);
    return ss.str();
}

std::string trim(std::string s) {
    const auto ws = " \t\r\n";
    s.erase(s.find_last_not_of(ws) + 1);
    s.erase(0, s.find_first_not_of(ws));
    return s;
}

// Strict RFC 4648 base64 (padding optional, whitespace ignored: kubeconfig data is often wrapped).
Result<std::string> base64_decode(std::string_view in, std::string_view what) {
    std::string out;
    std::uint32_t acc = 0;
    int bits = 0;
    bool padding = false;
    for (char c : in) {
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        int v;
        if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
        else if (c >= '0' && c <= '9') v = c - '0' + 52;
        else if (c == '+') v = 62;
        else if (c == '/') v = 63;
        else if (c == '=') {
            padding = true;
            continue;
        } else {
            return Error::invalid(std::string(what) + ": not valid base64 (character '" + std::string(1, c) + "')");
        }
        if (padding) return Error::invalid(std::string(what) + ": not valid base64 (data after '=' padding)");
        acc = (acc << 6) | static_cast<std::uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    if (bits >= 6) return Error::invalid(std::string(what) + ": not valid base64 (truncated)");
    return out;
}

Status check_pem(const std::string& pem, std::string_view what, bool key) {
    const bool ok =
        key ? (pem.find("-----BEGIN ") != std::string::npos && pem.find("PRIVATE KEY-----") != std::string::npos)
            : pem.find("-----BEGIN CERTIFICATE-----") != std::string::npos;
    if (!ok)
        return Error::invalid(std::string(what) + ": not a PEM " + (key ? "private key" : "certificate") +
                              " (expected a '-----BEGIN " + (key ? "... PRIVATE KEY" : "CERTIFICATE") +
                              "-----' block)");
    return {};
}

// "https://host[:port][/prefix]" with a non-empty host; returned without a trailing '/'.
Result<std::string> check_server(std::string server, std::string_view what) {
    constexpr std::string_view kScheme = "https://";
    if (server.rfind(kScheme, 0) != 0)
        return Error::invalid(std::string(what) + ": server \"" + server +
                              "\" is not an https:// URL; kxlb only talks to the API over verified TLS");
    while (server.size() > kScheme.size() && server.back() == '/') server.pop_back();
    const auto authority = std::string_view(server).substr(kScheme.size());
    const auto host_end = authority.find('/');
    const auto host = authority.substr(0, host_end);
    if (host.empty() || host.front() == ':' || host.find_first_of(" \t@?#") != std::string_view::npos)
        return Error::invalid(std::string(what) + ": server \"" + server + "\" has no valid host");
    return server;
}

// ---- kubeconfig ----

std::string where(const std::string& origin, const YAML::Node& n, const std::string& path) {
    const auto m = n.Mark();
    if (m.line < 0) return origin + ": " + path;
    return origin + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": " + path;
}

class Kubeconfig {
public:
    Kubeconfig(std::string dir, std::string origin) : dir_(std::move(dir)), origin_(std::move(origin)) {}

    Result<KubeConfig> load(const std::string& text, std::chrono::milliseconds refresh);

private:
    Error err(const YAML::Node& n, const std::string& path, const std::string& what) const {
        return Error::invalid(where(origin_, n, path) + ": " + what);
    }
    // The optional scalar `key` of mapping `m`; an error if present but not a scalar.
    Result<std::optional<std::string>> scalar(const YAML::Node& m, const std::string& key,
                                              const std::string& path) const;
    // The `inner` mapping of the item named `name` in the list `list_key` (clusters/contexts/users).
    Result<YAML::Node> named(const YAML::Node& doc, const std::string& list_key, const std::string& inner,
                             const std::string& name) const;
    // Either a file (`file_key`, relative to the kubeconfig) or inline base64 (`data_key`); "" if neither.
    Result<std::string> file_or_data(const YAML::Node& m, const std::string& file_key, const std::string& data_key,
                                     const std::string& path) const;
    std::string resolve(const std::string& p) const {
        return std::filesystem::path(p).is_absolute() ? p : (std::filesystem::path(dir_) / p).string();
    }

    std::string dir_;
    std::string origin_;
};

Result<std::optional<std::string>> Kubeconfig::scalar(const YAML::Node& m, const std::string& key,
                                                      const std::string& path) const {
    const auto n = m[key];
    if (!n || n.IsNull()) return std::optional<std::string>{};
    if (!n.IsScalar()) return err(n, path + "." + key, "expected a string");
    return std::optional<std::string>(n.Scalar());
}

Result<YAML::Node> Kubeconfig::named(const YAML::Node& doc, const std::string& list_key, const std::string& inner,
                                     const std::string& name) const {
    const auto list = doc[list_key];
    if (!list || list.IsNull())
        return err(doc, list_key, "missing; the current context needs " + inner + " \"" + name + "\"");
    if (!list.IsSequence()) return err(list, list_key, "expected a list");
    std::optional<YAML::Node> found;
    for (std::size_t i = 0; i < list.size(); ++i) {
        const auto item = list[i];
        const auto path = list_key + "[" + std::to_string(i) + "]";
        if (!item.IsMap()) return err(item, path, "expected a mapping with name and " + inner);
        auto n = scalar(item, "name", path);
        if (!n) return n.error();
        if (!n->has_value() || (*n)->empty()) return err(item, path + ".name", "missing");
        if (**n != name) continue;
        if (found) return err(item, path + ".name", "\"" + name + "\" is defined twice");
        const auto body = item[inner];
        if (!body || !body.IsMap()) return err(item, path + "." + inner, "missing or not a mapping");
        found = body;
    }
    if (!found) return err(list, list_key, "no " + inner + " named \"" + name + "\"");
    return *found;
}

Result<std::string> Kubeconfig::file_or_data(const YAML::Node& m, const std::string& file_key,
                                             const std::string& data_key, const std::string& path) const {
    auto file = scalar(m, file_key, path);
    if (!file) return file.error();
    auto data = scalar(m, data_key, path);
    if (!data) return data.error();
    if (file->has_value() && data->has_value())
        return err(m[data_key], path + "." + data_key,
                   "both " + file_key + " and " + data_key + " are set; keep only one");
    if (data->has_value()) return base64_decode(**data, where(origin_, m[data_key], path + "." + data_key));
    if (file->has_value()) {
        if ((*file)->empty()) return err(m[file_key], path + "." + file_key, "empty path");
        return read_file(resolve(**file), path + "." + file_key);
    }
    return std::string();
}

Result<KubeConfig> Kubeconfig::load(const std::string& text, std::chrono::milliseconds refresh) {
    YAML::Node doc;
    try {
        doc = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        return Error::invalid(origin_ + ":" + std::to_string(e.mark.line + 1) + ":" +
                              std::to_string(e.mark.column + 1) + ": YAML syntax error: " + e.msg);
    }
    if (!doc.IsMap()) return Error::invalid(origin_ + ": not a kubeconfig (the document is not a mapping)");

    auto ctx_name = scalar(doc, "current-context", "(document)");
    if (!ctx_name) return ctx_name.error();
    if (!ctx_name->has_value() || (*ctx_name)->empty())
        return Error::invalid(origin_ + ": current-context is not set; set it to the context kxlb should use");
    auto ctx = named(doc, "contexts", "context", **ctx_name);
    if (!ctx) return ctx.error();
    auto cluster_name = scalar(*ctx, "cluster", "context");
    if (!cluster_name) return cluster_name.error();
    if (!cluster_name->has_value()) return err(*ctx, "context.cluster", "missing");
    auto user_name = scalar(*ctx, "user", "context");
    if (!user_name) return user_name.error();

    auto cluster = named(doc, "clusters", "cluster", **cluster_name);
    if (!cluster) return cluster.error();
    KubeConfig cfg;
    cfg.origin = origin_;
    auto server = scalar(*cluster, "server", "cluster");
    if (!server) return server.error();
    if (!server->has_value() || (*server)->empty()) return err(*cluster, "cluster.server", "missing");
    auto url = check_server(**server, where(origin_, (*cluster)["server"], "cluster.server"));
    if (!url) return url.error();
    cfg.server = std::move(url).value();
    if (auto insecure = (*cluster)["insecure-skip-tls-verify"];
        insecure && insecure.IsScalar() && insecure.Scalar() != "false")
        return err(insecure, "cluster.insecure-skip-tls-verify",
                   "TLS verification cannot be turned off; give the cluster's CA (certificate-authority)");
    auto ca = file_or_data(*cluster, "certificate-authority", "certificate-authority-data", "cluster");
    if (!ca) return ca.error();
    if (!ca->empty())
        if (auto st = check_pem(*ca, where(origin_, *cluster, "cluster.certificate-authority"), false); !st)
            return st.error();
    cfg.ca_pem = std::move(ca).value();

    if (!user_name->has_value()) return cfg;  // anonymous
    auto user = named(doc, "users", "user", **user_name);
    if (!user) return user.error();
    for (const char* unsupported : {"exec", "auth-provider", "username", "password"})
        if ((*user)[unsupported])
            return err((*user)[unsupported], std::string("user.") + unsupported,
                       "not supported by kxlb; use a token, tokenFile or client certificate");
    auto cert = file_or_data(*user, "client-certificate", "client-certificate-data", "user");
    if (!cert) return cert.error();
    auto key = file_or_data(*user, "client-key", "client-key-data", "user");
    if (!key) return key.error();
    if (cert->empty() != key->empty())
        return err(*user, "user",
                   cert->empty() ? "client-key without client-certificate; give both or neither"
                                 : "client-certificate without client-key; give both or neither");
    if (!cert->empty()) {
        if (auto st = check_pem(*cert, where(origin_, *user, "user.client-certificate"), false); !st) return st.error();
        if (auto st = check_pem(*key, where(origin_, *user, "user.client-key"), true); !st) return st.error();
    }
    cfg.client_cert_pem = std::move(cert).value();
    cfg.client_key_pem = std::move(key).value();

    auto token = scalar(*user, "token", "user");
    if (!token) return token.error();
    auto token_file = scalar(*user, "tokenFile", "user");
    if (!token_file) return token_file.error();
    if (token->has_value() && token_file->has_value())
        return err((*user)["tokenFile"], "user.tokenFile", "both token and tokenFile are set; keep only one");
    if (token->has_value()) {
        cfg.token = trim(**token);
        if (cfg.token.empty()) return err((*user)["token"], "user.token", "empty token");
    }
    if (token_file->has_value()) {
        if ((*token_file)->empty()) return err((*user)["tokenFile"], "user.tokenFile", "empty path");
        cfg.token_file = std::make_shared<TokenFile>(resolve(**token_file), refresh);
        if (auto t = cfg.token_file->token(); !t) return t.error();
    }
    return cfg;
}

}  // namespace

TokenFile::TokenFile(std::string path, std::chrono::milliseconds refresh) : path_(std::move(path)), refresh_(refresh) {}

Result<std::string> TokenFile::read_locked() {
    auto text = read_file(path_, "token file");
    if (!text) {
        cached_.reset();
        return text.error();
    }
    auto t = trim(std::move(text).value());
    if (t.empty()) {
        cached_.reset();
        return Error::invalid("token file " + path_ + " is empty");
    }
    cached_ = t;
    read_at_ = std::chrono::steady_clock::now();
    return t;
}

Result<std::string> TokenFile::token() {
    std::lock_guard lock(mu_);
    if (cached_ && std::chrono::steady_clock::now() - read_at_ < refresh_) return *cached_;
    return read_locked();
}

bool TokenFile::invalidate() {
    std::lock_guard lock(mu_);
    const auto before = cached_;
    auto now = read_locked();
    return now && (!before || *before != *now);
}

Result<KubeConfig> load_in_cluster(const InClusterSource& src) {
    auto env = [&](const std::string& name) -> std::optional<std::string> {
        if (src.getenv) return src.getenv(name);
        const char* v = std::getenv(name.c_str());
        return v ? std::optional<std::string>(v) : std::nullopt;
    };
    const auto host = env("KUBERNETES_SERVICE_HOST");
    const auto port = env("KUBERNETES_SERVICE_PORT");
    if (!host || host->empty())
        return Error::invalid("in-cluster config: KUBERNETES_SERVICE_HOST is not set (not running in a pod?)");
    if (!port || port->empty()) return Error::invalid("in-cluster config: KUBERNETES_SERVICE_PORT is not set");
    if (port->size() > 5 || port->find_first_not_of("0123456789") != std::string::npos || std::stoul(*port) == 0 ||
        std::stoul(*port) > 65535)
        return Error::invalid("in-cluster config: KUBERNETES_SERVICE_PORT \"" + *port + "\" is not a port 1-65535");
    std::string h = *host;
    if (h.find(':') != std::string::npos && h.front() != '[') h = "[" + h + "]";  // IPv6 literal
    auto server = check_server("https://" + h + ":" + *port, "in-cluster config");
    if (!server) return server.error();

    const auto dir = std::filesystem::path(src.root) / kServiceAccountDir;
    KubeConfig cfg;
    cfg.origin = "in-cluster";
    cfg.server = std::move(server).value();
    auto ca = read_file((dir / "ca.crt").string(), "in-cluster CA bundle");
    if (!ca) return ca.error();
    if (auto st = check_pem(*ca, "in-cluster CA bundle " + (dir / "ca.crt").string(), false); !st) return st.error();
    cfg.ca_pem = std::move(ca).value();
    cfg.token_file = std::make_shared<TokenFile>((dir / "token").string(), src.token_refresh);
    if (auto t = cfg.token_file->token(); !t) return Error{t.error().code, "in-cluster config: " + t.error().message};
    return cfg;
}

Result<KubeConfig> parse_kubeconfig(const std::string& text, const std::string& dir, const std::string& origin,
                                    std::chrono::milliseconds token_refresh) {
    return Kubeconfig(dir, origin).load(text, token_refresh);
}

Result<KubeConfig> load_kubeconfig(const std::string& path, std::chrono::milliseconds token_refresh) {
    auto text = read_file(path, "kubeconfig");
    if (!text) return text.error();
    return parse_kubeconfig(*text, std::filesystem::path(path).parent_path().string(), path, token_refresh);
}

}  // namespace kxlb::k8s
