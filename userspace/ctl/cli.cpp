// kxlbctl's command-line grammar on CLI11. CLI11 collects the words; the checks and messages for
// missing/unknown objects, commands and values are ours, so they are exact and testable.
#include "ctl/cli.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <utility>

namespace kxlb::ctl {

namespace {

constexpr const char* kObjects = "service, backend, maglev, conntrack, stats, trace, version";
constexpr const char* kServiceHelp = "ADDRESS:PORT/PROTO (10.96.0.1:443/tcp, [fd00::1]:53/udp) or service id";

// True if the raw arguments ask for JSON (so that even a parse error is reported as JSON).
bool wants_json(const std::vector<std::string>& args) {
    for (const auto& a : args) {
        if (a == "--") break;
        if (a == "--json" || a == "--pretty") return true;
        if (a.size() >= 2 && a[0] == '-' && a[1] != '-' &&
            std::all_of(a.begin() + 1, a.end(), [](char c) { return c == 'j' || c == 'p'; }))
            return true;
    }
    return false;
}

// The words CLI11 collects, before they are checked and typed.
struct Raw {
    bool json = false, pretty = false;
    std::string pin_path = kDefaultPinPath;
    std::string service, backend, limit, flags, ifname;
    std::string positional[5];
    bool full = false, yes = false, all = false;
};

class Grammar {
public:
    Grammar() : app_("kxlbctl: inspect the kxlb load balancer on this node (reads its pinned BPF maps)", "kxlbctl") {
        add_globals();
        add_service();
        add_backend();
        add_maglev();
        add_conntrack();
        add_stats();
        add_trace();
        version_ = app_.add_subcommand("version", "Print the CLI version and the BPF ABI version it speaks");
        leaf(version_);
    }

    ParseOutcome parse(const std::vector<std::string>& args) {
        std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 wants them reversed
        try {
            app_.parse(reversed);
        } catch (const CLI::CallForHelp&) {
            return HelpRequest{selected_help()};
        } catch (const CLI::CallForAllHelp&) {
            return HelpRequest{selected_help()};
        } catch (const CLI::ParseError& e) {
            return UsageError{e.what()};
        }
        auto inv = build();
        if (auto* err = std::get_if<UsageError>(&inv)) err->json = raw_.json || raw_.pretty;
        return inv;
    }

private:
    void add_globals() {
        app_.allow_extras();
        app_.set_help_flag("-h,--help", "Print this help message and exit");
        app_.add_flag("-j,--json", raw_.json, "JSON output");
        app_.add_flag("-p,--pretty", raw_.pretty, "Pretty-printed JSON output (implies --json)");
        app_.add_option("--pin-path", raw_.pin_path,
                        std::string("bpffs directory the agent pins its maps under (default ") + kDefaultPinPath + ")")
            ->type_name("PATH");
    }

    void add_service() {
        auto* service = object("service", "Frontends with their backends and traffic");
        service_list_ = command(service, "list", "List services");
        service_show_ = command(service, "show", "Show one service and its backends");
        service_show_->add_option("FRONTEND", raw_.positional[0], kServiceHelp)->type_name("");
    }

    void add_backend() {
        auto* backend = object("backend", "Backends of all services");
        backend_list_ = command(backend, "list", "List backends");
        backend_service_ =
            backend_list_->add_option("--service", raw_.service, "Only this service's backends")->type_name("SERVICE");
    }

    void add_maglev() {
        auto* maglev = object("maglev", "Maglev lookup tables");
        maglev_show_ = command(maglev, "show", "Slot share of every backend of a service");
        maglev_show_->add_option("SERVICE", raw_.positional[0], kServiceHelp)->type_name("");
        maglev_show_->add_flag("--full", raw_.full, "Also print the whole table (slot -> backend id)");
    }

    void add_conntrack() {
        auto* conntrack = object("conntrack", "Tracked flows");
        ct_list_ = command(conntrack, "list", "List tracked flows (client -> frontend -> backend)");
        ct_list_service_ =
            ct_list_->add_option("--service", raw_.service, "Only flows of this service")->type_name("SERVICE");
        ct_list_backend_ =
            ct_list_->add_option("--backend", raw_.backend, "Only flows to this backend id")->type_name("ID");
        ct_list_limit_ = ct_list_->add_option("--limit", raw_.limit, "Show at most N flows")->type_name("N");
        ct_flush_ = command(conntrack, "flush", "Delete tracked flows (established connections re-balance or break)");
        ct_flush_service_ =
            ct_flush_->add_option("--service", raw_.service, "Only flows of this service")->type_name("SERVICE");
        ct_flush_->add_flag("--yes", raw_.yes, "Confirm: flushing breaks established TCP connections");
    }

    void add_stats() {
        stats_ = app_.add_subcommand("stats", "Datapath outcome counters, parser and socket-LB counters");
        leaf(stats_);
        stats_->add_flag("--all", raw_.all, "Also show counters that are zero");
    }

    void add_trace() {
        trace_ = app_.add_subcommand("trace", "Run a synthetic packet through the datapath (changes no live state)");
        leaf(trace_);
        const char* names[] = {"SRC", "DST", "SPORT", "DPORT", "PROTO"};
        const char* helps[] = {"client address", "destination address (a frontend)", "source port", "destination port",
                               "tcp or udp"};
        for (int i = 0; i < 5; ++i) trace_->add_option(names[i], raw_.positional[i], helps[i])->type_name("");
        trace_flags_ =
            trace_->add_option("--flags", raw_.flags, "TCP flags: syn (default), ack, fin, rst, psh; comma-separated")
                ->type_name("FLAGS");
        trace_
            ->add_option("--ifname", raw_.ifname, "Ingress interface (default: the one kxlb's XDP link is pinned for)")
            ->type_name("IFNAME");
    }

    CLI::App* object(const char* name, const char* help) {
        auto* o = app_.add_subcommand(name, help);
        leaf(o);
        objects_.push_back(o);
        return o;
    }
    CLI::App* command(CLI::App* object, const char* name, const char* help) {
        auto* c = object->add_subcommand(name, help);
        leaf(c);
        return c;
    }
    static void leaf(CLI::App* a) {
        a->allow_extras();
        a->fallthrough();  // global options may follow the command
    }

    std::string selected_help() const {
        // help() of the deepest subcommand the user named, with its full path in the usage line.
        const CLI::App* a = &app_;
        std::string path;
        for (;;) {
            auto subs = a->get_subcommands();
            if (subs.empty()) break;
            path += (path.empty() ? "" : " ") + a->get_name();
            a = subs.front();
        }
        return a->help(path);
    }

    // The first word nobody claimed, as an error; nullopt if all were claimed.
    std::optional<UsageError> leftover() const {
        const auto rest = app_.remaining(true);
        if (rest.empty()) return std::nullopt;
        const auto& w = rest.front();
        if (w.size() > 1 && w[0] == '-') return UsageError{"unknown option '" + w + "'"};
        return UsageError{"unexpected argument '" + w + "'"};
    }

    static std::string commands_of(const CLI::App* object) {
        std::string out;
        for (const auto* c : object->get_subcommands([](const CLI::App*) { return true; }))
            out += (out.empty() ? "" : ", ") + c->get_name();
        return out;
    }

    std::variant<Invocation, HelpRequest, UsageError> build() {
        GlobalOptions g;
        g.mode = raw_.pretty ? OutputMode::JsonPretty : raw_.json ? OutputMode::Json : OutputMode::Table;
        g.pin_path = raw_.pin_path;

        const auto top = app_.get_subcommands();
        const auto rest = app_.remaining(true);
        if (top.empty()) {
            if (!rest.empty() && !(rest.front().size() > 1 && rest.front()[0] == '-'))
                return UsageError{"unknown object '" + rest.front() + "' (expected " + kObjects + ")"};
            if (auto e = leftover()) return *e;
            return UsageError{std::string("missing object (expected ") + kObjects + ")"};
        }
        CLI::App* obj = top.front();
        if (std::find(objects_.begin(), objects_.end(), obj) != objects_.end() && obj->get_subcommands().empty()) {
            const std::string expected = " (expected " + commands_of(obj) + ")";
            if (!rest.empty() && !(rest.front().size() > 1 && rest.front()[0] == '-'))
                return UsageError{"unknown command '" + rest.front() + "' for " + obj->get_name() + expected};
            return UsageError{"missing command for " + obj->get_name() + expected};
        }
        auto cmd = command_from(obj);
        if (auto* e = std::get_if<UsageError>(&cmd)) return *e;
        if (auto e = leftover()) return *e;
        return Invocation{g, std::get<Command>(cmd)};
    }

    std::variant<Command, UsageError> command_from(CLI::App* obj) {
        const CLI::App* leaf = obj->get_subcommands().empty() ? obj : obj->get_subcommands().front();
        if (leaf == service_list_) return Command{ServiceListCmd{}};
        if (leaf == service_show_) {
            auto s = required_service("service show", "FRONTEND");
            if (!s) return UsageError{s.error().message};
            return Command{ServiceShowCmd{*s}};
        }
        if (leaf == backend_list_) {
            auto s = optional_service(backend_service_);
            if (!s) return UsageError{s.error().message};
            return Command{BackendListCmd{*s}};
        }
        if (leaf == maglev_show_) {
            auto s = required_service("maglev show", "SERVICE");
            if (!s) return UsageError{s.error().message};
            return Command{MaglevShowCmd{*s, raw_.full}};
        }
        if (leaf == ct_list_) return conntrack_list();
        if (leaf == ct_flush_) {
            if (!raw_.yes)
                return UsageError{
                    "conntrack flush deletes live flows (established TCP connections continue only if their backend "
                    "and SNAT port can be recovered): "
                    "add --yes to confirm"};
            auto s = optional_service(ct_flush_service_);
            if (!s) return UsageError{s.error().message};
            return Command{ConntrackFlushCmd{*s}};
        }
        if (leaf == stats_) return Command{StatsCmd{raw_.all}};
        if (leaf == trace_) return trace();
        return Command{VersionCmd{}};
    }

    Result<ServiceRef> required_service(const std::string& cmd, const std::string& name) const {
        if (raw_.positional[0].empty()) return Error::invalid(cmd + ": missing " + name + " (" + kServiceHelp + ")");
        return parse_service_ref(raw_.positional[0]);
    }

    Result<std::optional<ServiceRef>> optional_service(const CLI::Option* opt) const {
        if (opt->count() == 0) return std::optional<ServiceRef>();
        auto s = parse_service_ref(raw_.service);
        if (!s) return Error::invalid("--service: " + s.error().message);
        return std::optional<ServiceRef>(*s);
    }

    std::variant<Command, UsageError> conntrack_list() const {
        ConntrackListCmd c;
        auto s = optional_service(ct_list_service_);
        if (!s) return UsageError{s.error().message};
        c.service = *s;
        if (ct_list_backend_->count() > 0) {
            auto id = parse_number("--backend", raw_.backend, KXLB_MAX_BACKENDS - 1);
            if (!id) return UsageError{id.error().message};
            c.backend_id = static_cast<std::uint32_t>(*id);
        }
        if (ct_list_limit_->count() > 0) {
            auto n = parse_number("--limit", raw_.limit, 1'000'000'000);
            if (!n) return UsageError{n.error().message};
            c.limit = static_cast<std::size_t>(*n);
        }
        return Command{c};
    }

    std::variant<Command, UsageError> trace() const {
        const auto& p = raw_.positional;
        if (p[4].empty())
            return UsageError{
                "trace: missing arguments: expected SRC DST SPORT DPORT PROTO "
                "(e.g. trace 10.0.0.9 10.96.0.1 40000 443 tcp)"};
        TraceCmd t;
        auto src = IpAddr::parse(p[0]);
        if (!src) return UsageError{"SRC: " + src.error().message};
        auto dst = IpAddr::parse(p[1]);
        if (!dst) return UsageError{"DST: " + dst.error().message};
        if (src->family != dst->family) return UsageError{"SRC and DST must be of the same address family"};
        auto sport = parse_port("SPORT", p[2]);
        if (!sport) return UsageError{sport.error().message};
        auto dport = parse_port("DPORT", p[3]);
        if (!dport) return UsageError{dport.error().message};
        auto proto = parse_proto(p[4]);
        if (!proto) return UsageError{proto.error().message};
        t.src = *src;
        t.dst = *dst;
        t.sport = *sport;
        t.dport = *dport;
        t.proto = *proto;
        t.ifname = raw_.ifname;
        if (trace_flags_->count() > 0) {
            if (t.proto != IPPROTO_TCP) return UsageError{"--flags: only for tcp"};
            auto f = parse_tcp_flags(raw_.flags);
            if (!f) return UsageError{f.error().message};
            t.tcp_flags = *f;
        } else if (t.proto == IPPROTO_TCP) {
            t.tcp_flags = 0x02;  // SYN: a new connection
        }
        return Command{t};
    }

    Raw raw_;
    CLI::App app_;
    std::vector<CLI::App*> objects_;  // objects that need a command
    CLI::App *service_list_ = nullptr, *service_show_ = nullptr, *backend_list_ = nullptr, *maglev_show_ = nullptr;
    CLI::App *ct_list_ = nullptr, *ct_flush_ = nullptr, *stats_ = nullptr, *trace_ = nullptr, *version_ = nullptr;
    CLI::Option *backend_service_ = nullptr, *ct_list_service_ = nullptr, *ct_list_backend_ = nullptr;
    CLI::Option *ct_list_limit_ = nullptr, *ct_flush_service_ = nullptr, *trace_flags_ = nullptr;
};

}  // namespace

ParseOutcome parse_command_line(const std::vector<std::string>& args) {
    Grammar g;
    auto out = g.parse(args);
    if (auto* e = std::get_if<UsageError>(&out)) e->json = e->json || wants_json(args);
    return out;
}

}  // namespace kxlb::ctl
