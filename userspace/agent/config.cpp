// kxlb-agent configuration: YAML text -> AgentConfig. Every field is checked and every problem is
// collected (position, path, what is wrong, how to fix it) instead of stopping at the first one.
// The schema is documented in docs/agent.md; keep the two in step.
#include "agent/config.hpp"

#include <fcntl.h>
#include <kxlb/decap.h>
#include <sys/socket.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <map>
#include <utility>

#include "lib/unique_fd.hpp"

namespace kxlb::agent {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr std::string_view kDocument = "(document)";
constexpr std::size_t kMaxFileBytes = 64u << 20;
constexpr std::uint64_t kMaxU64 = std::numeric_limits<std::uint64_t>::max();

// ---- Problem collection ---------------------------------------------------------------------

// A node with its path from the document root and the position a problem about it points at.
struct Val {
    YAML::Node node;
    YAML::Mark mark;   // the value's position; its key's when the value is empty (yaml-cpp marks those oddly)
    std::string path;  // "services[1].backends[0].port"; "" for the root
};

std::string join_path(std::string_view parent, std::string_view key) {
    return parent.empty() ? std::string(key) : std::string(parent) + "." + std::string(key);
}

struct Problem {
    int line = 0;  // 1-based
    int col = 0;
    std::string text;  // "<path>: <what>; <hint>"
};

class Diag {
public:
    explicit Diag(std::string_view source) : source_(source) {}

    void report_at(const YAML::Mark& at, std::string_view path, std::string_view what, std::string_view hint) {
        std::string text = path.empty() ? std::string(kDocument) : std::string(path);
        text += ": " + std::string(what) + "; " + std::string(hint);
        problems_.push_back(Problem{std::max(at.line, 0) + 1, std::max(at.column, 0) + 1, std::move(text)});
    }
    void report(const Val& v, std::string_view what, std::string_view hint) { report_at(v.mark, v.path, what, hint); }
    bool empty() const { return problems_.empty(); }

    // All problems in document order, one per line.
    Error error() const {
        auto sorted = problems_;
        std::stable_sort(sorted.begin(), sorted.end(), [](const Problem& a, const Problem& b) {
            return std::pair(a.line, a.col) < std::pair(b.line, b.col);
        });
        std::string msg;
        for (const auto& p : sorted) {
            if (!msg.empty()) msg += '\n';
            msg += source_ + ":" + std::to_string(p.line) + ":" + std::to_string(p.col) + ": " + p.text;
        }
        return Error::invalid(msg);
    }

private:
    std::string source_;
    std::vector<Problem> problems_;
};

// ---- Text helpers ---------------------------------------------------------------------------

// A scalar as shown in messages: double-quoted, control characters escaped, long values cut.
std::string quote(std::string_view s) {
    constexpr std::size_t kMax = 60;
    std::string out = "\"";
    for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '\n') out += "\\n";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20 || c == 0x7f) out += '?';
        else out += static_cast<char>(c);
    }
    if (s.size() > kMax) out += "...";
    return out + "\"";
}

std::string describe(const YAML::Node& n) {
    switch (n.Type()) {
        case YAML::NodeType::Scalar: return quote(n.Scalar());
        case YAML::NodeType::Sequence: return "a list";
        case YAML::NodeType::Map: return "a mapping";
        default: return "an empty value";
    }
}

bool is_quoted(const YAML::Node& n) { return n.Tag() == "!"; }

bool all_digits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string join(const std::vector<std::string_view>& words, std::string_view sep) {
    std::string out;
    for (const auto& w : words) out += (out.empty() ? "" : std::string(sep)) + std::string(w);
    return out;
}

// Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    }
    return d[a.size()][b.size()];
}

// The candidate that `word` most likely misspells (case-insensitive, at most 2 edits and fewer
// edits than half its length, or a prefix of at least 4 characters), if any.
std::optional<std::string_view> closest(std::string_view word, const std::vector<std::string_view>& candidates) {
    std::optional<std::string_view> best;
    std::size_t best_d = 3;
    const std::string w = lower(word);
    for (const auto& c : candidates) {
        // A truncated key ("allow_generic" for "allow_generic_xdp") counts as one edit.
        const bool prefix = w.size() >= 4 && (c.starts_with(w) || w.starts_with(c));
        const std::size_t d = prefix ? 1 : edit_distance(w, c);
        if (d < best_d && 2 * d < c.size()) best_d = d, best = c;
    }
    return best;
}

std::string did_you_mean(std::string_view c) { return "did you mean '" + std::string(c) + "'?"; }

std::string format_duration(milliseconds d) {
    const auto ms = d.count();
    if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
    if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
}

// "500ms", "2s", "1m", "3h": an integer and one unit. Too large values come back as max().
std::optional<milliseconds> parse_duration(std::string_view text) {
    std::size_t n = 0;
    while (n < text.size() && text[n] >= '0' && text[n] <= '9') ++n;
    if (n == 0) return std::nullopt;
    const std::string_view unit = text.substr(n);
    std::int64_t scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else return std::nullopt;
    std::uint64_t value = 0;
    const auto [p, ec] = std::from_chars(text.data(), text.data() + n, value);
    if (ec != std::errc() || value > 1'000'000'000'000ULL) return milliseconds::max();
    return milliseconds(static_cast<std::int64_t>(value) * scale);
}

// Decimal, or 0x hex when allowed; a leading '-' still counts as a number (then out of range).
bool looks_integer(std::string_view s, bool allow_hex) {
    if (allow_hex && (s.starts_with("0x") || s.starts_with("0X")))
        return s.size() > 2 &&
               std::all_of(s.begin() + 2, s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
    if (s.starts_with('-')) s.remove_prefix(1);
    return all_digits(s);
}

std::optional<std::uint64_t> to_u64(std::string_view s) {
    int base = 10;
    if (s.starts_with("0x") || s.starts_with("0X")) s.remove_prefix(2), base = 16;
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

std::string family_name(const IpAddr& a) { return a.family == AF_INET6 ? "IPv6" : "IPv4"; }

// ---- Typed readers: each reports its own problems and yields a value only when it is valid ----

std::optional<std::string> read_scalar(Diag& d, const Val& v, std::string_view expected, std::string_view hint) {
    if (v.node.IsScalar()) return v.node.Scalar();
    d.report(v, "expected " + std::string(expected) + ", got " + describe(v.node), hint);
    return std::nullopt;
}

std::optional<std::string> read_string(Diag& d, const Val& v, std::string_view hint) {
    return read_scalar(d, v, "a string", hint);
}

void out_of_range(Diag& d, const Val& v, std::string_view shown, std::string_view lo, std::string_view hi,
                  std::string_view hint) {
    d.report(v, std::string(shown) + " is out of range " + std::string(lo) + "-" + std::string(hi), hint);
}

// An unquoted integer in [lo, hi]; hex only when allow_hex.
std::optional<std::uint64_t> read_uint(Diag& d, const Val& v, std::uint64_t lo, std::uint64_t hi, std::string_view hint,
                                       bool allow_hex = false) {
    auto text = read_scalar(d, v, "an integer", hint);
    if (!text) return std::nullopt;
    if (!looks_integer(*text, allow_hex)) {
        d.report(v, quote(*text) + " is not an integer", hint);
        return std::nullopt;
    }
    if (is_quoted(v.node)) {
        d.report(v, quote(*text) + " is a quoted string, not an integer", "write " + *text + " without quotes");
        return std::nullopt;
    }
    auto value = to_u64(*text);
    if (!value || *value < lo || *value > hi) {
        out_of_range(d, v, *text, std::to_string(lo), std::to_string(hi), hint);
        return std::nullopt;
    }
    return value;
}

// Unquoted true or false (YAML 1.2 core schema spellings; "yes"/"on" are rejected as ambiguous).
std::optional<bool> read_bool(Diag& d, const Val& v) {
    constexpr std::string_view kHint = "write true or false";
    auto text = read_scalar(d, v, "true or false", kHint);
    if (!text) return std::nullopt;
    const bool is_true = *text == "true" || *text == "True" || *text == "TRUE";
    const bool is_false = *text == "false" || *text == "False" || *text == "FALSE";
    if ((is_true || is_false) && is_quoted(v.node)) {
        d.report(v, quote(*text) + " is a quoted string, not a boolean", "write " + lower(*text) + " without quotes");
        return std::nullopt;
    }
    if (is_true || is_false) return is_true;
    d.report(v, quote(*text) + " is not a boolean", kHint);
    return std::nullopt;
}

std::optional<milliseconds> read_duration(Diag& d, const Val& v, milliseconds lo, milliseconds hi,
                                          std::string_view hint) {
    auto text = read_scalar(d, v, "a duration", hint);
    if (!text) return std::nullopt;
    if (all_digits(*text)) {
        d.report(v, quote(*text) + " has no unit", "write " + *text + "s (units: ms, s, m, h)");
        return std::nullopt;
    }
    auto value = parse_duration(*text);
    if (!value) {
        d.report(v, quote(*text) + " is not a duration", "write an integer and a unit: 500ms, 2s, 1m, 3h");
        return std::nullopt;
    }
    if (*value < lo || *value > hi) {
        out_of_range(d, v, *text, format_duration(lo), format_duration(hi), hint);
        return std::nullopt;
    }
    return value;
}

// A duration in [lo, hi] that is a whole number of seconds.
std::optional<seconds> read_seconds(Diag& d, const Val& v, seconds lo, seconds hi, std::string_view hint) {
    auto value = read_duration(d, v, lo, hi, hint);
    if (!value) return std::nullopt;
    if (value->count() % 1000 != 0) {
        const seconds rounded(std::max<std::int64_t>(1, (value->count() + 500) / 1000));
        d.report(v, format_duration(*value) + " is not a whole number of seconds",
                 "round it to seconds, e.g. " + format_duration(rounded));
        return std::nullopt;
    }
    return std::chrono::duration_cast<seconds>(*value);
}

template <typename T>
struct Choice {
    std::string_view name;
    T value;
};

// One of a fixed set of words (case-sensitive; a near miss gets a suggestion).
template <typename T>
std::optional<T> read_choice(Diag& d, const Val& v, const std::vector<Choice<T>>& choices) {
    std::vector<std::string_view> names;
    for (const auto& c : choices) names.push_back(c.name);
    const std::string list = join(names, "|");
    auto text = read_scalar(d, v, "one of " + list, "write one of them");
    if (!text) return std::nullopt;
    for (const auto& c : choices)
        if (c.name == *text) return c.value;
    const auto near = closest(*text, names);
    d.report(v, quote(*text) + " is not one of " + list, near ? did_you_mean(*near) : "write one of them");
    return std::nullopt;
}

std::optional<IpAddr> read_ip(Diag& d, const Val& v, std::string_view hint) {
    auto text = read_scalar(d, v, "an IP address", hint);
    if (!text) return std::nullopt;
    auto ip = IpAddr::parse(*text);
    if (!ip) {
        d.report(v, quote(*text) + " is not an IPv4 or IPv6 address", hint);
        return std::nullopt;
    }
    if (ip->is_zero()) {
        d.report(v, quote(*text) + " is the unspecified address", hint);
        return std::nullopt;
    }
    return *ip;
}

// "/..." (or "" when empty_ok).
std::optional<std::string> read_abs_path(Diag& d, const Val& v, bool empty_ok, std::string_view hint) {
    auto text = read_string(d, v, hint);
    if (!text) return std::nullopt;
    if ((empty_ok && text->empty()) || text->starts_with('/')) return text;
    d.report(v, quote(*text) + " is not an absolute path", hint);
    return std::nullopt;
}

// The items of a list, each with its path "<path>[i]".
std::vector<Val> read_list(Diag& d, const Val& v, std::string_view hint) {
    std::vector<Val> out;
    if (!v.node.IsSequence()) {
        d.report(v, "expected a list, got " + describe(v.node), hint);
        return out;
    }
    for (const auto& item : v.node) {
        const YAML::Mark mark = item.IsNull() ? v.mark : item.Mark();
        out.push_back(Val{item, mark, v.path + "[" + std::to_string(out.size()) + "]"});
    }
    return out;
}

// One mapping checked against its schema: keys that are unknown, repeated or not plain words are
// reported here, once; fields are then fetched by name.
class Fields {
public:
    Fields(Diag& d, Val v, std::vector<std::string_view> known, std::string_view hint)
        : d_(&d), v_(std::move(v)), known_(std::move(known)) {
        if (!v_.node.IsMap()) {
            d.report(v_, "expected a mapping, got " + describe(v_.node), hint);
            return;
        }
        for (auto it = v_.node.begin(); it != v_.node.end(); ++it) add(it->first, it->second);
    }

    const Val& self() const { return v_; }
    std::optional<Val> get(std::string_view key) const {
        for (const auto& [k, v] : fields_)
            if (k == key) return v;
        return std::nullopt;
    }
    // Reports the key as missing when it is not there.
    std::optional<Val> require(std::string_view key, std::string_view hint) const {
        auto v = get(key);
        if (!v && v_.node.IsMap()) d_->report_at(v_.mark, join_path(v_.path, key), "required key is missing", hint);
        return v;
    }

private:
    void add(const YAML::Node& key, const YAML::Node& value) {
        if (!key.IsScalar()) {
            d_->report_at(key.Mark(), v_.path, "a key is " + describe(key), "keys are plain words");
            return;
        }
        const std::string& name = key.Scalar();
        const std::string path = join_path(v_.path, name);
        if (std::find(known_.begin(), known_.end(), name) == known_.end()) {
            const auto near = closest(name, known_);
            d_->report_at(key.Mark(), path, "unknown key",
                          near ? did_you_mean(*near) : "valid keys here: " + join(known_, ", "));
            return;
        }
        if (auto first = get(name)) {
            d_->report_at(key.Mark(), path,
                          "duplicate key (first on line " + std::to_string(first->mark.line + 1) + ")",
                          "remove one of them");
            return;
        }
        fields_.emplace_back(name, Val{value, value.IsNull() ? key.Mark() : value.Mark(), path});
    }

    Diag* d_;
    Val v_;
    std::vector<std::string_view> known_;
    std::vector<std::pair<std::string, Val>> fields_;
};

// Calls read(field) when the field is present and stores a valid result into out.
template <typename T, typename Read>
void assign(const std::optional<Val>& field, T& out, Read&& read) {
    if (!field) return;
    if (auto value = read(*field)) out = static_cast<T>(*value);
}

// ---- Field syntax checks --------------------------------------------------------------------

bool valid_interface_name(std::string_view s) {
    if (s.empty() || s.size() > 15 || s == "." || s == "..") return false;
    return std::none_of(s.begin(), s.end(), [](char c) {
        return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) ||
               std::iscntrl(static_cast<unsigned char>(c));
    });
}

// [a-z0-9]([-a-z0-9.]*[a-z0-9])?, at most 253 characters.
bool valid_service_name(std::string_view s) {
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (s.empty() || s.size() > 253 || !alnum(s.front()) || !alnum(s.back())) return false;
    return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-' || c == '.'; });
}

bool has_space_or_control(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        return std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c));
    });
}

// "IPv4:port" or "[IPv6]:port", port 1..65535.
bool valid_listen_address(std::string_view s) {
    std::string_view host, port;
    if (s.starts_with('[')) {
        const auto close = s.find("]:");
        if (close == std::string_view::npos) return false;
        host = s.substr(1, close - 1), port = s.substr(close + 2);
    } else {
        const auto colon = s.rfind(':');
        if (colon == std::string_view::npos) return false;
        host = s.substr(0, colon), port = s.substr(colon + 1);
    }
    auto ip = IpAddr::parse(host);
    if (!ip || (ip->family == AF_INET6) != s.starts_with('[')) return false;
    auto p = all_digits(port) && port.size() <= 5 ? to_u64(port) : std::nullopt;
    return p && *p >= 1 && *p <= 65535;
}

// Nearest primes below and above n within the table-size range, for the "not a prime" hint.
std::string prime_suggestion(std::uint32_t n) {
    std::string out;
    for (std::uint32_t p = n - 1; p >= kMinMaglevSize; --p)
        if (is_prime(p)) {
            out = std::to_string(p);
            break;
        }
    for (std::uint32_t p = n + 1; p <= KXLB_MAX_MAGLEV_SIZE; ++p)
        if (is_prime(p)) {
            out += (out.empty() ? "" : " or ") + std::to_string(p);
            break;
        }
    return "use a prime such as " + out;
}

// ---- The parser -----------------------------------------------------------------------------

const std::vector<Choice<std::uint8_t>> kProtocols = {{"tcp", IPPROTO_TCP}, {"udp", IPPROTO_UDP}};
const std::vector<Choice<ServiceMode>> kModes = {{"fullnat", ServiceMode::FullNat}, {"dsr", ServiceMode::Dsr}};
const std::vector<Choice<AllDownPolicy>> kAllDown = {{"keep-last-healthy", AllDownPolicy::KeepLastHealthy},
                                                     {"no-backends", AllDownPolicy::NoBackends}};
const std::vector<Choice<HealthCheckSpec::Type>> kCheckTypes = {{"tcp", HealthCheckSpec::Type::Tcp},
                                                                {"http", HealthCheckSpec::Type::Http},
                                                                {"https", HealthCheckSpec::Type::Https}};
const std::vector<Choice<std::string_view>> kLogLevels = {
    {"trace", "trace"}, {"debug", "debug"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}};
const std::vector<Choice<std::string_view>> kLogFormats = {{"text", "text"}, {"json", "json"}};

class Parser {
public:
    explicit Parser(std::string_view source) : d_(source) {}

    Result<AgentConfig> run(std::string_view text) {
        try {
            parse_document(text);
        } catch (const std::exception& e) {  // yaml-cpp or allocation failure: never escape parse_config
            d_.report_at(YAML::Mark::null_mark(), "", std::string("cannot read the document: ") + e.what(),
                         "check that the file is YAML text");
        }
        if (!d_.empty()) return d_.error();
        return cfg_;
    }

private:
    void parse_document(std::string_view text) {
        std::vector<YAML::Node> docs;
        try {
            docs = YAML::LoadAll(std::string(text));
        } catch (const YAML::DeepRecursion& e) {  // its message is yaml-cpp's "bad file"
            d_.report_at(e.mark, "", "nesting is too deep (" + std::to_string(e.depth()) + " levels)",
                         "the agent config nests only a few levels; look for runaway brackets");
            return;
        } catch (const YAML::Exception& e) {
            d_.report_at(e.mark, "", "YAML syntax error: " + e.msg, "check the indentation, quoting and brackets here");
            return;
        }
        if (docs.empty() || (docs.size() == 1 && docs[0].IsNull())) {
            d_.report_at(YAML::Mark::null_mark(), "", "the document is empty",
                         "start from the example in docs/agent.md");
            return;
        }
        if (docs.size() > 1) {
            d_.report_at(docs[1].Mark(), "", "found " + std::to_string(docs.size()) + " YAML documents",
                         "keep one document per file");
            return;
        }
        root(Val{docs[0], docs[0].Mark(), ""});
    }

    void root(const Val& v) {
        Fields f(
            d_, v,
            {"node", "datapath", "pin_path", "socket_lb", "metrics", "logging", "services", "kubernetes", "dsr_decap"},
            "start from the example in docs/agent.md");
        if (auto n = f.get("node")) node(*n);
        if (auto n = f.get("dsr_decap")) dsr_decap(*n);
        if (auto n = f.get("datapath")) datapath(*n);
        assign(f.get("pin_path"), cfg_.pin_path, [&](const Val& x) {
            return read_abs_path(d_, x, false, "use a directory on the BPF filesystem, e.g. /sys/fs/bpf/kxlb");
        });
        if (auto n = f.get("socket_lb")) socket_lb(*n);
        if (auto n = f.get("metrics")) metrics(*n);
        if (auto n = f.get("logging")) logging(*n);
        if (auto n = f.get("services")) services(*n);
        if (auto n = f.get("kubernetes")) kubernetes(*n);
    }

    // ---- kubernetes

    // "IP:port" / "[IPv6]:port".
    std::optional<EndpointConfig> endpoint(const Val& v, std::string_view hint) {
        auto text = read_string(d_, v, hint);
        if (!text) return std::nullopt;
        if (!valid_listen_address(*text)) {
            d_.report(v, quote(*text) + " is not an IP:port address", hint);
            return std::nullopt;
        }
        const std::string_view s(*text);
        const auto colon = s.rfind(':');
        const std::string_view host = s.starts_with('[') ? s.substr(1, colon - 2) : s.substr(0, colon);
        auto ip = IpAddr::parse(host);
        auto port = to_u64(s.substr(colon + 1));
        if (!ip || !port) return std::nullopt;
        return EndpointConfig{*ip, static_cast<std::uint16_t>(*port)};
    }

    void kubernetes(const Val& v) {
        Fields f(d_, v, {"enabled", "kubeconfig", "node_name", "bootstrap_apiservers", "apiserver_service"},
                 "write kubernetes: { enabled: true } (see docs/kubernetes.md)");
        auto& k = cfg_.kubernetes;
        assign(f.get("enabled"), k.enabled, [&](const Val& x) { return read_bool(d_, x); });
        assign(f.get("kubeconfig"), k.kubeconfig, [&](const Val& x) {
            return read_abs_path(d_, x, true, "use an absolute kubeconfig path, or \"\" for the in-cluster account");
        });
        if (auto n = f.get("node_name")) {
            constexpr std::string_view kHint = "use the Kubernetes node name, e.g. worker-1";
            if (auto name = read_string(d_, *n, kHint)) {
                if (name->size() > 253 || has_space_or_control(*name))
                    d_.report(*n, quote(*name) + " is not a node name", kHint);
                else k.node_name = *name;
            }
        }
        constexpr std::string_view kApiHint = "write IP:port, e.g. 10.0.0.11:6443 or [fd00::11]:6443";
        if (auto n = f.get("bootstrap_apiservers"))
            for (const auto& item : read_list(d_, *n, "list the control-plane apiservers, e.g. [10.0.0.11:6443]"))
                if (auto e = endpoint(item, kApiHint)) {
                    if (std::find(k.bootstrap_apiservers.begin(), k.bootstrap_apiservers.end(), *e) !=
                        k.bootstrap_apiservers.end())
                        d_.report(item, "this apiserver is listed twice", "remove one of them");
                    else k.bootstrap_apiservers.push_back(*e);
                }
        if (auto n = f.get("apiserver_service")) {
            k.apiserver_service = endpoint(*n, "write the kubernetes Service address, e.g. 10.96.0.1:443");
            if (k.apiserver_service)
                for (const auto& e : k.bootstrap_apiservers)
                    if (e.addr.family != k.apiserver_service->addr.family)
                        d_.report(*n, "the bootstrap apiservers must have the family of apiserver_service",
                                  "list " + family_name(k.apiserver_service->addr) + " apiservers");
        } else if (!k.bootstrap_apiservers.empty()) {
            d_.report(v, "bootstrap_apiservers needs apiserver_service",
                      "add apiserver_service: the kubernetes Service address, e.g. 10.96.0.1:443");
        }
    }

    // ---- node

    void node(const Val& v) {
        Fields f(d_, v, {"interfaces", "addresses"}, "write interfaces: and addresses: under node:");
        if (auto n = f.get("interfaces"))
            for (const auto& item : read_list(d_, *n, "list the NICs, e.g. [{name: eth0}]"))
                if (auto ic = interface(item)) cfg_.interfaces.push_back(std::move(*ic));
        if (auto n = f.get("addresses"))
            for (const auto& item : read_list(d_, *n, "list this node's addresses, e.g. [10.0.0.5]"))
                node_address(item);
    }

    // An interface name is unique across node.interfaces and dsr_decap.interfaces: a NIC runs one
    // XDP program.
    void dsr_decap(const Val& v) {
        Fields f(d_, v, {"interfaces", "addresses"}, "write dsr_decap: { interfaces: [{name: eth0}] }");
        auto& d = cfg_.dsr_decap;
        if (auto n = f.get("interfaces"))
            for (const auto& item : read_list(d_, *n, "list the NICs the DSR tunnels arrive on, e.g. [{name: eth0}]"))
                if (auto ic = interface(item)) d.interfaces.push_back(std::move(*ic));
        if (auto n = f.get("addresses"))
            for (const auto& item :
                 read_list(d_, *n, "list the addresses balancers encapsulate toward, e.g. [10.0.0.5]")) {
                auto ip = read_ip(d_, item, "use an address of this node that balancers send tunnels to");
                if (!ip) continue;
                if (std::find(d.addresses.begin(), d.addresses.end(), *ip) != d.addresses.end()) {
                    d_.report(item, ip->str() + " is listed twice", "remove one of them");
                    continue;
                }
                if (d.addresses.size() >= KXLB_MAX_DECAP_ADDRS) {
                    d_.report(item, "more than " + std::to_string(KXLB_MAX_DECAP_ADDRS) + " addresses",
                              "list at most " + std::to_string(KXLB_MAX_DECAP_ADDRS));
                    continue;
                }
                d.addresses.push_back(*ip);
            }
    }

    std::optional<InterfaceConfig> interface(const Val& v) {
        Fields f(d_, v, {"name", "allow_generic_xdp"}, "write { name: eth0 }");
        InterfaceConfig ic;
        bool ok = false;
        if (auto n = f.require("name", "add the interface name, e.g. name: eth0")) {
            auto name = read_string(d_, *n, "use the kernel's interface name, e.g. eth0");
            ok = name && check_interface_name(*n, v.path, *name);
            if (ok) ic.name = *name;
        }
        assign(f.get("allow_generic_xdp"), ic.allow_generic, [&](const Val& x) { return read_bool(d_, x); });
        if (!ok) return std::nullopt;
        return ic;
    }

    bool check_interface_name(const Val& v, const std::string& item_path, const std::string& name) {
        if (!valid_interface_name(name)) {
            d_.report(v, quote(name) + " is not a valid interface name",
                      "use the kernel's interface name, e.g. eth0 (1-15 characters, no '/', ':' or spaces)");
            return false;
        }
        if (auto first = interface_paths_.find(name); first != interface_paths_.end()) {
            d_.report(v, quote(name) + " is listed twice (also " + first->second + ")",
                      "remove one of them (a NIC runs one XDP program: the balancer or the DSR decapsulation)");
            return false;
        }
        interface_paths_.emplace(name, item_path);
        return true;
    }

    void node_address(const Val& v) {
        auto ip = read_ip(d_, v, "use an address of this node, e.g. 10.0.0.5");
        if (!ip) return;
        for (std::size_t i = 0; i < cfg_.node_addresses.size(); ++i) {
            if (cfg_.node_addresses[i].family != ip->family) continue;
            d_.report(
                v, "a second " + family_name(*ip) + " address (" + cfg_.node_addresses[i].str() + " is already listed)",
                "list at most one address per family");
            return;
        }
        cfg_.node_addresses.push_back(*ip);
    }

    // ---- datapath and global settings

    void datapath(const Val& v) {
        Fields f(
            d_, v,
            {"maglev_table_size", "hash_seed", "conntrack_entries", "snat_ports", "udp_timeout", "dsr_source_prefixes"},
            "write the datapath settings as a mapping");
        if (auto n = f.get("maglev_table_size")) maglev_size(*n);
        assign(f.get("hash_seed"), cfg_.hash_seed, [&](const Val& x) {
            return read_uint(d_, x, 0, kMaxU64, "write a 64-bit number, decimal or 0x hex", true);
        });
        assign(f.get("conntrack_entries"), cfg_.conntrack_entries, [&](const Val& x) {
            return read_uint(d_, x, kMinConntrackEntries, kMaxConntrackEntries,
                             "size it for the concurrent flows through this node; the default is 262144");
        });
        if (auto n = f.get("snat_ports")) snat_ports(*n);
        assign(f.get("udp_timeout"), cfg_.udp_timeout, [&](const Val& x) {
            return read_seconds(d_, x, seconds(1), std::chrono::hours(24),
                                "how long an idle UDP flow keeps its backend, e.g. 30s");
        });
        if (auto n = f.get("dsr_source_prefixes"))
            for (const auto& item :
                 read_list(d_, *n, "list at most one IPv4 and one IPv6 prefix, e.g. [10.200.0.0/24, fd00:200::/64]"))
                dsr_source_prefix(item);
    }

    // The outer source of DSR tunnels: per flow an address of the prefix, so backends spread the
    // tunnels over their RX queues (docs/datapath.md).
    void dsr_source_prefix(const Val& v) {
        auto c = cidr(v);
        if (!c) return;
        const bool v4 = c->addr.family == AF_INET;
        const unsigned lo = v4 ? 8 : 64, hi = v4 ? 32 : 128;
        if (c->prefix_len < lo || c->prefix_len > hi) {
            d_.report(v,
                      "/" + std::to_string(c->prefix_len) + " is out of range /" + std::to_string(lo) + "-/" +
                          std::to_string(hi) + " for an " + family_name(c->addr) + " DSR source prefix",
                      "use a block no host uses, e.g. " + std::string(v4 ? "10.200.0.0/24" : "fd00:200::/64") +
                          " (backends see these addresses only as tunnel sources)");
            return;
        }
        for (const auto& o : cfg_.dsr_source_prefixes)
            if (o.addr.family == c->addr.family) {
                d_.report(v, "a second " + family_name(c->addr) + " prefix (" + o.str() + " is already listed)",
                          "list at most one prefix per family");
                return;
            }
        cfg_.dsr_source_prefixes.push_back(*c);
    }

    void maglev_size(const Val& v) {
        maglev_size_ok_ = false;
        auto n =
            read_uint(d_, v, kMinMaglevSize, KXLB_MAX_MAGLEV_SIZE, "use a prime in this range, e.g. 65537 or 16381");
        if (!n) return;
        if (!is_prime(static_cast<std::uint32_t>(*n))) {
            d_.report(v, std::to_string(*n) + " is not a prime", prime_suggestion(static_cast<std::uint32_t>(*n)));
            return;
        }
        cfg_.maglev_size = static_cast<std::uint32_t>(*n);
        maglev_size_ok_ = true;
    }

    void snat_ports(const Val& v) {
        constexpr std::string_view kHint = "write LO-HI with 1024 <= LO <= HI <= 65535, e.g. 61000-65535";
        auto text = read_string(d_, v, kHint);
        if (!text) return;
        const auto dash = text->find('-');
        const std::string_view s(*text);
        const std::string_view lo_s = s.substr(0, dash), hi_s = dash == s.npos ? "" : s.substr(dash + 1);
        auto lo = all_digits(lo_s) && lo_s.size() <= 5 ? to_u64(lo_s) : std::nullopt;
        auto hi = all_digits(hi_s) && hi_s.size() <= 5 ? to_u64(hi_s) : std::nullopt;
        if (!lo || !hi) return d_.report(v, quote(*text) + " is not a port range", kHint);
        if (*lo < 1024) return d_.report(v, quote(*text) + " starts below 1024", kHint);
        if (*hi > 65535) return d_.report(v, quote(*text) + " ends above 65535", kHint);
        if (*lo > *hi) return d_.report(v, quote(*text) + " is empty (LO > HI)", kHint);
        cfg_.snat_port_lo = static_cast<std::uint16_t>(*lo);
        cfg_.snat_port_hi = static_cast<std::uint16_t>(*hi);
    }

    void socket_lb(const Val& v) {
        Fields f(d_, v, {"cgroup"}, "write socket_lb: { cgroup: /sys/fs/cgroup/unified }");
        auto cg = f.get("cgroup");
        socket_lb_cgroup_ok_ = v.node.IsMap() && !cg;
        if (!cg) return;
        if (auto p = read_abs_path(d_, *cg, true, "use the cgroup v2 mount, e.g. /sys/fs/cgroup, or \"\" to disable")) {
            cfg_.socket_lb_cgroup = *p;
            socket_lb_cgroup_ok_ = true;
        }
    }

    void metrics(const Val& v) {
        Fields f(d_, v, {"address"}, "write metrics: { address: \"127.0.0.1:9464\" }");
        constexpr std::string_view kHint = "write IP:port, e.g. 127.0.0.1:9464 or [::1]:9464, or \"\" to disable";
        auto a = f.get("address");
        if (!a) return;
        auto text = read_string(d_, *a, kHint);
        if (!text) return;
        if (text->empty() || valid_listen_address(*text)) cfg_.metrics_address = *text;
        else d_.report(*a, quote(*text) + " is not an IP:port address", kHint);
    }

    void logging(const Val& v) {
        Fields f(d_, v, {"level", "format"}, "write logging: { level: info, format: text }");
        assign(f.get("level"), cfg_.log_level, [&](const Val& x) { return read_choice(d_, x, kLogLevels); });
        assign(f.get("format"), cfg_.log_format, [&](const Val& x) { return read_choice(d_, x, kLogFormats); });
    }

    // ---- services

    void services(const Val& v) {
        const auto items = read_list(d_, v, "list the services, each a mapping with name, frontends and backends");
        std::size_t frontends = 0, backends = 0;
        for (const auto& item : items) {
            cfg_.services.push_back(service(item));
            frontends += cfg_.services.back().frontends.size();
            backends += cfg_.services.back().backends.size();
        }
        if (frontends > KXLB_MAX_SERVICES)
            d_.report(v,
                      std::to_string(frontends) + " frontends exceed the datapath's limit of " +
                          std::to_string(KXLB_MAX_SERVICES),
                      "remove frontends: each one is an entry of the datapath's services map");
        if (backends > KXLB_MAX_BACKENDS)
            d_.report(v,
                      std::to_string(backends) + " backends exceed the datapath's limit of " +
                          std::to_string(KXLB_MAX_BACKENDS),
                      "remove backends: each one is an entry of the datapath's backends map");
    }

    ServiceConfig service(const Val& v) {
        Fields f(d_, v,
                 {"name", "frontends", "mode", "socket_lb", "session_affinity", "source_ranges", "all_backends_down",
                  "backends", "health_check"},
                 "write each service as a mapping with name, frontends and backends");
        ServiceConfig s;
        if (auto n = f.require("name", "add a unique name, e.g. name: kubernetes")) service_name(*n, v.path, s);
        std::vector<Val> fe_vals;
        if (auto n = f.require("frontends", "add the addresses clients dial, e.g. - { address: 10.96.0.1, port: 443 }"))
            fe_vals = frontends(*n, s);
        assign(f.get("mode"), s.mode, [&](const Val& x) { return read_choice(d_, x, kModes); });
        if (auto n = f.get("socket_lb")) service_socket_lb(*n, s);
        if (auto n = f.get("session_affinity")) session_affinity(*n, s);
        if (auto n = f.get("source_ranges"))
            for (const auto& item : read_list(d_, *n, "list CIDRs, e.g. [10.0.0.0/8]"))
                if (auto c = cidr(item)) s.source_ranges.push_back(*c);
        assign(f.get("all_backends_down"), s.all_down, [&](const Val& x) { return read_choice(d_, x, kAllDown); });
        if (auto n = f.get("backends")) backends(*n, s, fe_vals);
        if (auto n = f.get("health_check")) s.health_check = health_check(*n);
        return s;
    }

    void service_name(const Val& v, const std::string& service_path, ServiceConfig& s) {
        auto name = read_string(d_, v, "use a DNS-label-like name, e.g. kubernetes");
        if (!name) return;
        if (!valid_service_name(*name))
            return d_.report(v, quote(*name) + " is not a valid service name",
                             "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit "
                             "(at most 253 characters)");
        if (auto first = service_names_.find(*name); first != service_names_.end())
            return d_.report(v, quote(*name) + " is already the name of " + first->second,
                             "service names must be unique");
        service_names_.emplace(*name, service_path);
        s.name = *name;
    }

    // Returns the items of frontends that parsed, in s.frontends order (for later family checks).
    std::vector<Val> frontends(const Val& v, ServiceConfig& s) {
        std::vector<Val> parsed;
        const auto items =
            read_list(d_, v, "list the addresses clients dial, e.g. - { address: 10.96.0.1, port: 443 }");
        if (items.empty() && v.node.IsSequence())
            d_.report(v, "a service needs at least one frontend", "add one, e.g. - { address: 10.96.0.1, port: 443 }");
        for (const auto& item : items) {
            auto fe = frontend(item);
            if (!fe) continue;
            if (auto owner = frontend_paths_.find(*fe); owner != frontend_paths_.end()) {
                d_.report(item, fe->str() + " is already used by " + owner->second,
                          "a frontend belongs to one service only: remove one of them");
                continue;
            }
            frontend_paths_.emplace(*fe, item.path);
            s.frontends.push_back(*fe);
            parsed.push_back(item);
        }
        return parsed;
    }

    std::optional<Frontend> frontend(const Val& v) {
        Fields f(d_, v, {"address", "port", "protocol"}, "write { address: 10.96.0.1, port: 443, protocol: tcp }");
        Frontend fe;
        bool ok = v.node.IsMap();
        auto addr = f.require("address", "add the address clients dial, e.g. address: 10.96.0.1");
        auto port = f.require("port", "add the port clients dial, e.g. port: 443");
        auto ip = addr ? read_ip(d_, *addr, "use the VIP, LoadBalancer IP, externalIP or node address clients dial")
                       : std::nullopt;
        auto p = port ? read_uint(d_, *port, 1, 65535, "use the port clients dial") : std::nullopt;
        ok = ok && ip && p;
        if (ip) fe.addr = *ip;
        if (p) fe.port = static_cast<std::uint16_t>(*p);
        if (auto proto = f.get("protocol")) {
            auto pr = read_choice(d_, *proto, kProtocols);
            ok = ok && pr;
            if (pr) fe.proto = *pr;
        }
        if (!ok) return std::nullopt;
        return fe;
    }

    void service_socket_lb(const Val& v, ServiceConfig& s) {
        auto on = read_bool(d_, v);
        if (!on) return;
        s.socket_lb = *on;
        if (*on && socket_lb_cgroup_ok_ && cfg_.socket_lb_cgroup.empty())
            d_.report(v, "socket-LB is requested but its hooks are disabled (socket_lb.cgroup is \"\")",
                      "set socket_lb.cgroup to the cgroup v2 mount or remove this");
    }

    void session_affinity(const Val& v, ServiceConfig& s) {
        Fields f(d_, v, {"timeout"}, "write session_affinity: { timeout: 3h }");
        if (!v.node.IsMap()) return;
        s.affinity_timeout = std::chrono::hours(3);
        assign(f.get("timeout"), *s.affinity_timeout, [&](const Val& x) {
            return read_seconds(d_, x, seconds(1), std::chrono::hours(24),
                                "how long a client stays with its backend after its last new connection, e.g. 3h");
        });
    }

    std::optional<Cidr> cidr(const Val& v) {
        constexpr std::string_view kHint = "write ADDRESS/PREFIX, e.g. 10.0.0.0/8 or fd00::/8";
        auto text = read_string(d_, v, kHint);
        if (!text) return std::nullopt;
        const std::string_view s(*text);
        const auto slash = s.find('/');
        auto ip = IpAddr::parse(s.substr(0, slash));
        if (ip && slash == s.npos) {
            d_.report(v, quote(s) + " has no prefix length",
                      "write " + *text + (ip->family == AF_INET ? "/32" : "/128"));
            return std::nullopt;
        }
        const std::string_view len_s = slash == s.npos ? "" : s.substr(slash + 1);
        auto len = all_digits(len_s) && len_s.size() <= 3 ? to_u64(len_s) : std::nullopt;
        if (!ip || !len) {
            d_.report(v, quote(s) + " is not a CIDR", kHint);
            return std::nullopt;
        }
        const unsigned max_len = ip->family == AF_INET ? 32 : 128;
        if (*len > max_len) {
            d_.report(v, quote(s) + " has a prefix length above " + std::to_string(max_len),
                      family_name(*ip) + " prefixes are 0-" + std::to_string(max_len));
            return std::nullopt;
        }
        Cidr c{*ip, static_cast<std::uint8_t>(*len)};
        if (!c.host_bits_zero()) {
            d_.report(v, quote(s) + " has host bits set", "use " + c.network().str());
            return std::nullopt;
        }
        return c;
    }

    void backends(const Val& v, ServiceConfig& s, const std::vector<Val>& fe_vals) {
        const auto items = read_list(d_, v, "list the backends, e.g. - { address: 10.0.0.11, port: 6443 }");
        std::map<BackendIdentity, std::string> seen;
        std::vector<Val> be_vals;
        for (const auto& item : items) {
            auto be = backend(item);
            if (!be) continue;
            const BackendSpec spec{be->addr, be->port, be->weight, false};
            if (auto first = seen.find(spec.identity()); first != seen.end()) {
                d_.report(item, spec.str() + " is listed twice (also " + first->second + ")", "remove one of them");
                continue;
            }
            seen.emplace(spec.identity(), item.path);
            s.backends.push_back(*be);
            be_vals.push_back(item);
        }
        if (be_vals.size() != items.size() || fe_vals.size() != s.frontends.size()) return;
        check_families(s, fe_vals, be_vals);
        if (s.mode == ServiceMode::Dsr) check_dsr_ports(s, be_vals);
        if (maglev_size_ok_ && s.backends.size() > cfg_.maglev_size)
            d_.report(v,
                      std::to_string(s.backends.size()) + " backends do not fit a Maglev table of " +
                          std::to_string(cfg_.maglev_size) + " slots",
                      "raise datapath.maglev_table_size");
    }

    // Full-NAT keeps the address family: every backend needs a frontend of its family and, when there
    // are backends, every frontend needs a backend of its family.
    void check_families(const ServiceConfig& s, const std::vector<Val>& fe_vals, const std::vector<Val>& be_vals) {
        auto has = [](const auto& list, std::uint8_t family) {
            return std::any_of(list.begin(), list.end(), [&](const auto& x) { return x.addr.family == family; });
        };
        if (s.frontends.empty()) return;
        for (std::size_t i = 0; i < s.backends.size(); ++i) {
            const auto& be = s.backends[i];
            if (!has(s.frontends, be.addr.family))
                d_.report(
                    be_vals[i],
                    family_name(be.addr) + " backend but the service has no " + family_name(be.addr) + " frontend",
                    "the address family is kept end to end: add an " + family_name(be.addr) +
                        " frontend or remove this backend");
        }
        if (s.backends.empty()) return;
        for (std::size_t i = 0; i < s.frontends.size(); ++i) {
            const auto& fe = s.frontends[i];
            if (!has(s.backends, fe.addr.family))
                d_.report(
                    fe_vals[i],
                    family_name(fe.addr) + " frontend but the service has no " + family_name(fe.addr) + " backend",
                    "the address family is kept end to end: add an " + family_name(fe.addr) +
                        " backend or remove this frontend");
        }
    }

    // DSR hands the client's packet to the backend unchanged: no port translation.
    void check_dsr_ports(const ServiceConfig& s, const std::vector<Val>& be_vals) {
        for (std::size_t i = 0; i < s.backends.size(); ++i)
            for (const auto& fe : s.frontends)
                if (s.backends[i].port != fe.port) {
                    d_.report(be_vals[i],
                              "port " + std::to_string(s.backends[i].port) + " differs from frontend " + fe.str() +
                                  "'s: mode dsr delivers the client's packet unchanged, ports included",
                              "let the backend listen on port " + std::to_string(fe.port) +
                                  " (and give every frontend that port), or use mode: fullnat");
                    break;
                }
    }

    std::optional<BackendConfig> backend(const Val& v) {
        Fields f(d_, v, {"address", "port", "weight", "local"}, "write { address: 10.0.0.11, port: 6443, weight: 1 }");
        BackendConfig be;
        auto addr = f.require("address", "add the backend's address, e.g. address: 10.0.0.11");
        auto port = f.require("port", "add the backend's port, e.g. port: 6443");
        auto ip = addr ? read_ip(d_, *addr, "use the backend's own address") : std::nullopt;
        auto p = port ? read_uint(d_, *port, 1, 65535, "use the backend's TCP/UDP port") : std::nullopt;
        bool ok = v.node.IsMap() && ip && p;
        if (ip) be.addr = *ip;
        if (p) be.port = static_cast<std::uint16_t>(*p);
        if (auto w = f.get("weight")) {
            auto weight = backend_weight(*w);
            ok = ok && weight;
            if (weight) be.weight = *weight;
        }
        assign(f.get("local"), be.local, [&](const Val& x) { return read_bool(d_, x); });
        if (!ok) return std::nullopt;
        return be;
    }

    std::optional<std::uint32_t> backend_weight(const Val& v) {
        constexpr std::string_view kHint = "weights are relative shares, 1-65535";
        auto w = read_uint(d_, v, 0, kMaxU64, kHint);
        if (!w) return std::nullopt;
        if (*w == 0) d_.report(v, "0 is not a valid weight", "remove the backend instead to send it no traffic");
        else if (*w > 65535) out_of_range(d_, v, std::to_string(*w), "1", "65535", kHint);
        else return static_cast<std::uint32_t>(*w);
        return std::nullopt;
    }

    // ---- health checks

    HealthCheckSpec health_check(const Val& v) {
        Fields f(d_, v,
                 {"type", "path", "expected_status", "host", "ca_file", "insecure_skip_verify", "interval", "timeout",
                  "rise", "fall", "port"},
                 "write the health check as a mapping, e.g. { type: tcp }");
        HealthCheckSpec hc;
        std::optional<HealthCheckSpec::Type> type = HealthCheckSpec::Type::Tcp;
        if (auto n = f.get("type")) type = read_choice(d_, *n, kCheckTypes);
        if (type) hc.type = *type;
        check_type_specific_keys(f, type);
        http_fields(f, hc);
        assign(f.get("insecure_skip_verify"), hc.insecure, [&](const Val& x) { return read_bool(d_, x); });
        timing_fields(f, hc);
        assign(f.get("port"), hc.port, [&](const Val& x) {
            return read_uint(d_, x, 1, 65535, "use the port health checks go to; omit it to use the backend's port");
        });
        if (type == HealthCheckSpec::Type::Https) check_https_trust(f, hc);
        return hc;
    }

    // path/expected_status/host need http or https; ca_file/insecure_skip_verify need https.
    void check_type_specific_keys(const Fields& f, std::optional<HealthCheckSpec::Type> type) {
        if (!type) return;
        using T = HealthCheckSpec::Type;
        for (std::string_view key : {"path", "expected_status", "host"})
            if (auto n = f.get(key); n && *type == T::Tcp)
                d_.report(*n, std::string(key) + " applies to http and https checks only",
                          "remove it or set type: http");
        for (std::string_view key : {"ca_file", "insecure_skip_verify"})
            if (auto n = f.get(key); n && *type != T::Https)
                d_.report(*n, std::string(key) + " applies to https checks only", "remove it or set type: https");
    }

    void http_fields(const Fields& f, HealthCheckSpec& hc) {
        if (auto n = f.get("path")) {
            auto path = read_string(d_, *n, "write the request path, e.g. /readyz");
            if (path && !path->starts_with('/'))
                d_.report(*n, quote(*path) + " does not start with '/'", "write /" + *path);
            else if (path && has_space_or_control(*path))
                d_.report(*n, quote(*path) + " contains spaces or control characters", "percent-encode them (%20)");
            else if (path) hc.path = *path;
        }
        assign(f.get("expected_status"), hc.expected_status, [&](const Val& x) {
            return read_uint(d_, x, 100, 599, "use the HTTP status a healthy backend answers with, e.g. 200");
        });
        if (auto n = f.get("host")) {
            auto host = read_string(d_, *n, "use the name the backend expects, e.g. kubernetes.default");
            if (host && (host->empty() || has_space_or_control(*host) || host->find('/') != std::string::npos))
                d_.report(*n, quote(*host) + " is not a host name",
                          "use the name the backend expects, e.g. kubernetes.default, or omit host");
            else if (host) hc.host = *host;
        }
        assign(f.get("ca_file"), hc.ca_file, [&](const Val& x) {
            return read_abs_path(d_, x, false,
                                 "use the absolute path of a PEM CA bundle, e.g. /etc/kubernetes/pki/ca.crt");
        });
    }

    void timing_fields(const Fields& f, HealthCheckSpec& hc) {
        auto interval = f.get("interval"), timeout = f.get("timeout");
        bool ok = true;
        auto read_ms = [&](const std::optional<Val>& n, milliseconds lo, std::chrono::milliseconds& out,
                           std::string_view hint) {
            if (!n) return;
            auto value = read_duration(d_, *n, lo, std::chrono::hours(1), hint);
            ok = ok && value;
            if (value) out = *value;
        };
        read_ms(interval, milliseconds(100), hc.interval, "time between two checks of a backend, e.g. 2s");
        read_ms(timeout, milliseconds(1), hc.timeout, "how long one check may take, e.g. 1s");
        const std::string_view kCountHint = "count consecutive results, e.g. 2 or 3";
        assign(f.get("rise"), hc.rise, [&](const Val& x) { return read_uint(d_, x, 1, 100, kCountHint); });
        assign(f.get("fall"), hc.fall, [&](const Val& x) { return read_uint(d_, x, 1, 100, kCountHint); });
        if (!ok || hc.timeout < hc.interval) return;
        const std::string iv = format_duration(hc.interval), to = format_duration(hc.timeout);
        if (timeout)
            d_.report(*timeout, to + " is not shorter than the interval " + iv, "use a timeout below the interval");
        else
            d_.report(*interval, iv + " is not longer than the timeout " + to + " (default)",
                      "set timeout below " + iv + " or use a longer interval");
    }

    void check_https_trust(const Fields& f, const HealthCheckSpec& hc) {
        if (hc.insecure && f.get("ca_file"))
            d_.report(*f.get("insecure_skip_verify"), "true while ca_file is also set",
                      "keep one: ca_file verifies the backend's certificate, insecure_skip_verify: true skips that");
        else if (!hc.insecure && !f.get("ca_file") && f.self().node.IsMap())
            d_.report(f.self(), "an https check needs to know how to verify the backend's certificate",
                      "set ca_file or insecure_skip_verify: true");
    }

    Diag d_;
    AgentConfig cfg_;
    bool maglev_size_ok_ = true;
    bool socket_lb_cgroup_ok_ = true;
    std::map<std::string, std::string> interface_paths_;  // name -> path of its first item
    std::map<std::string, std::string> service_names_;    // name -> path of its first use
    std::map<Frontend, std::string> frontend_paths_;      // frontend -> path of its first use
};

}  // namespace

Result<AgentConfig> parse_config(std::string_view yaml_text, std::string_view source_name) {
    return Parser(source_name).run(yaml_text);
}

Result<AgentConfig> load_config(const std::string& path) {
    const std::string what = "reading config file " + path;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return Error::from_errno(errno, what);
    std::string text;
    char buf[16384];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Error::from_errno(errno, what);
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > kMaxFileBytes) return Error{EFBIG, what + ": larger than 64 MiB; is this the config file?"};
    }
    return parse_config(text, path);
}

}  // namespace kxlb::agent
