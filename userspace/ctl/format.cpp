// Table and JSON renderings of kxlbctl's views.
#include "ctl/format.hpp"

#include <linux/bpf.h>
#include <netinet/in.h>

#include <cmath>
#include <cstdio>

#include "ctl/args.hpp"
#include "ctl/table.hpp"

namespace kxlb::ctl {

namespace {

using Align = Table::Align;

std::string num(std::uint64_t n) { return std::to_string(n); }

std::string dump(const Json& j, OutputMode mode) {
    return (mode == OutputMode::JsonPretty ? j.dump(2) : j.dump()) + "\n";
}

std::string l4_name(std::uint8_t proto) {
    switch (proto) {
        case IPPROTO_TCP: return "tcp";
        case IPPROTO_UDP: return "udp";
        case IPPROTO_ICMP: return "icmp";
        case IPPROTO_ICMPV6: return "icmpv6";
        default: return "proto-" + std::to_string(proto);
    }
}

template <typename T, typename Fn>
Json or_null(const std::optional<T>& v, Fn&& fn) {
    return v ? Json(fn(*v)) : Json(nullptr);
}

std::string opt_num(const std::optional<std::uint64_t>& v) { return v ? num(*v) : "-"; }

Json flags_json(std::uint32_t flags) {
    Json a = Json::array();
    if (flags & KXLB_SVC_F_SOCKET_LB) a.push_back("socket-lb");
    if (flags & KXLB_SVC_F_DSR) a.push_back("dsr");
    return a;
}

double share_pct(std::uint32_t slots, std::uint32_t size) {
    return size ? std::round(slots * 10000.0 / size) / 100.0 : 0.0;
}

std::string pct_str(double pct) {
    char buf[32];
    (void)std::snprintf(buf, sizeof buf, "%.2f%%", pct);
    return buf;
}

// "10.0.0.9:40000 -> 10.96.0.1:443" (ports left out for ICMP).
std::string headers_str(const TraceHeaders& h) {
    auto side = [](const IpAddr& a, const std::optional<std::uint16_t>& port) {
        return port ? Endpoint{a, *port}.str() : a.str();
    };
    return side(h.src, h.sport) + " -> " + side(h.dst, h.dport) + " " + l4_name(h.proto);
}

std::string trace_flow_str(TraceFlow f) {
    switch (f) {
        case TraceFlow::None: return "none";
        case TraceFlow::New: return "new";
        case TraceFlow::Established: return "established";
        case TraceFlow::Rebalanced: return "rebalanced";
        case TraceFlow::Reply: return "reply";
    }
    return "none";
}

Table traffic_table(std::vector<Table::Column> leading) {
    for (const char* h : {"PACKETS", "BYTES", "NEW_FLOWS", "SOCK_CONNS"}) leading.push_back({h, Align::Right});
    return Table(std::move(leading));
}

void append_traffic(std::vector<std::string>& cells, const Traffic& t, const std::optional<std::uint64_t>& sock) {
    cells.push_back(num(t.packets));
    cells.push_back(num(t.bytes));
    cells.push_back(num(t.new_flows));
    cells.push_back(opt_num(sock));
}

void add_traffic_json(Json& j, const Traffic& t, const std::optional<std::uint64_t>& sock) {
    j["packets"] = t.packets;
    j["bytes"] = t.bytes;
    j["new_flows"] = t.new_flows;
    j["socket_lb_connections"] = sock ? Json(*sock) : Json(nullptr);
}

std::string backends_table(const std::vector<BackendRow>& backends, bool with_service) {
    std::vector<Table::Column> cols = {{"ID", Align::Right}};
    if (with_service) {
        cols.emplace_back(Table::Column{"SVC", Align::Right});
        cols.emplace_back(Table::Column{"FRONTEND"});
    }
    for (const auto& c : {Table::Column{"ADDRESS"}, Table::Column{"WEIGHT", Align::Right}, Table::Column{"DRAINING"},
                          Table::Column{"GEN", Align::Right}})
        cols.push_back(c);
    Table t = traffic_table(cols);
    for (const auto& b : backends) {
        std::vector<std::string> cells = {num(b.id)};
        if (with_service) {
            cells.push_back(num(b.svc_id));
            cells.push_back(b.frontend ? b.frontend->str() : "-");
        }
        cells.push_back(b.endpoint.str());
        cells.push_back(num(b.weight));
        cells.emplace_back(b.draining ? "yes" : "no");
        cells.push_back(num(b.gen));
        append_traffic(cells, b.traffic, b.sock_connections);
        t.add(std::move(cells));
    }
    return t.str();
}

template <std::size_t N>
std::string counter_section(const char* title, const std::array<kxlb_counter, N>& counters,
                            const std::array<std::string_view, N>& names, bool all) {
    Table t({{title}, {"PACKETS", Align::Right}, {"BYTES", Align::Right}});
    for (std::size_t i = 0; i < N; ++i)
        if (all || counters[i].packets || counters[i].bytes)
            t.add({std::string(names[i]), num(counters[i].packets), num(counters[i].bytes)});
    return t.str() + (t.rows() ? "" : "(all zero)\n");
}

template <std::size_t N>
Json counter_json(const std::array<kxlb_counter, N>& counters, const std::array<std::string_view, N>& names) {
    Json j = Json::object();
    for (std::size_t i = 0; i < N; ++i)
        j[std::string(names[i])] = Json{{"packets", counters[i].packets}, {"bytes", counters[i].bytes}};
    return j;
}

}  // namespace

// ---- vocabulary ----------------------------------------------------------------------------------

std::string service_flags_str(std::uint32_t flags) {
    std::string out;
    for (const auto& f : flags_json(flags)) out += (out.empty() ? "" : ",") + f.get<std::string>();
    return out.empty() ? "-" : out;
}

std::string flow_state_str(std::uint32_t ct_flags) {
    const std::uint32_t fins = KXLB_CT_F_FIN_CLIENT | KXLB_CT_F_FIN_BACKEND;
    if (ct_flags & KXLB_CT_F_CLOSED) return "closed";
    if ((ct_flags & fins) == fins) return "fin-both";
    if (ct_flags & KXLB_CT_F_FIN_CLIENT) return "fin-client";
    if (ct_flags & KXLB_CT_F_FIN_BACKEND) return "fin-backend";
    return "open";
}

std::string verdict_name(std::uint32_t xdp_action) {
    switch (xdp_action) {
        case XDP_ABORTED: return "XDP_ABORTED";
        case XDP_DROP: return "XDP_DROP";
        case XDP_PASS: return "XDP_PASS";
        case XDP_TX: return "XDP_TX";
        case XDP_REDIRECT: return "XDP_REDIRECT";
        default: return "XDP_" + std::to_string(xdp_action);
    }
}

std::string age_str(std::uint64_t ms) {
    char buf[32];
    if (ms < 60'000) (void)std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
    else if (ms < 3'600'000)
        (void)std::snprintf(buf, sizeof buf, "%um%02us", static_cast<unsigned>(ms / 60'000),
                            static_cast<unsigned>(ms / 1000 % 60));
    else
        (void)std::snprintf(buf, sizeof buf, "%luh%02um", static_cast<unsigned long>(ms / 3'600'000),
                            static_cast<unsigned>(ms / 60'000 % 60));
    return buf;
}

// ---- JSON objects --------------------------------------------------------------------------------

Json to_json(const ServiceRow& s) {
    Json j;
    j["id"] = s.id;
    j["frontend"] = s.frontend.str();
    j["address"] = s.frontend.addr.str();
    j["port"] = s.frontend.port;
    j["protocol"] = l4_name(s.frontend.proto);
    j["flags"] = flags_json(s.flags);
    j["backend_count"] = s.backend_count;
    j["active_backends"] = s.active_backends;
    add_traffic_json(j, s.traffic, s.sock_connections);
    return j;
}

Json to_json(const BackendRow& b) {
    Json j;
    j["id"] = b.id;
    j["service_id"] = b.svc_id;
    j["frontend"] = or_null(b.frontend, [](const Frontend& f) { return f.str(); });
    j["address"] = b.endpoint.addr.str();
    j["port"] = b.endpoint.port;
    j["weight"] = b.weight;
    j["draining"] = b.draining;
    j["gen"] = b.gen;
    add_traffic_json(j, b.traffic, b.sock_connections);
    return j;
}

Json to_json(const FlowRow& f) {
    Json j;
    j["client"] = f.client.addr.str();
    j["client_port"] = f.client.port;
    j["frontend"] = f.frontend.str();
    j["protocol"] = l4_name(f.frontend.proto);
    j["service_id"] = f.svc_id;
    j["backend_id"] = f.backend_id;
    j["backend"] = or_null(f.backend, [](const Endpoint& e) { return e.addr.str(); });
    j["backend_port"] = or_null(f.backend, [](const Endpoint& e) { return e.port; });
    j["snat_port"] = f.snat_port ? Json(f.snat_port) : Json(nullptr);
    j["state"] = flow_state_str(f.flags);
    j["age_ms"] = f.age_ms;
    return j;
}

Json to_json(const TraceHeaders& h) {
    Json j;
    j["src"] = h.src.str();
    j["dst"] = h.dst.str();
    j["protocol"] = l4_name(h.proto);
    j["sport"] = or_null(h.sport, [](std::uint16_t p) { return p; });
    j["dport"] = or_null(h.dport, [](std::uint16_t p) { return p; });
    return j;
}

// ---- services and backends -----------------------------------------------------------------------

std::string render(const std::vector<ServiceRow>& services, OutputMode mode) {
    if (mode != OutputMode::Table) {
        Json a = Json::array();
        for (const auto& s : services) a.push_back(to_json(s));
        return dump(Json{{"services", a}}, mode);
    }
    Table t = traffic_table(
        {{"ID", Align::Right}, {"FRONTEND"}, {"FLAGS"}, {"BACKENDS", Align::Right}, {"ACTIVE", Align::Right}});
    for (const auto& s : services) {
        std::vector<std::string> cells = {num(s.id), s.frontend.str(), service_flags_str(s.flags), num(s.backend_count),
                                          num(s.active_backends)};
        append_traffic(cells, s.traffic, s.sock_connections);
        t.add(std::move(cells));
    }
    return t.str();
}

std::string render(const ServiceDetail& service, OutputMode mode) {
    const auto& d = service;
    if (mode != OutputMode::Table) {
        Json j = to_json(d.service);
        j["maglev_size"] = d.maglev_size;
        Json a = Json::array();
        for (const auto& b : d.backends) a.push_back(to_json(b));
        j["backends"] = a;
        return dump(Json{{"service", j}}, mode);
    }
    const auto& s = d.service;
    KeyValues kv;
    kv.add("flags", service_flags_str(s.flags));
    kv.add("backends", num(s.backend_count) + " (" + num(s.active_backends) + " active)");
    kv.add("maglev", d.maglev_size ? num(d.maglev_size) + " slots" : "no table (no usable backend)");
    kv.add("traffic", num(s.traffic.packets) + " packets, " + num(s.traffic.bytes) + " bytes, " +
                          num(s.traffic.new_flows) + " new flows");
    kv.add("socket-lb", s.sock_connections ? num(*s.sock_connections) + " connections" : "-");
    return "service " + num(s.id) + ": " + s.frontend.str() + "\n" + kv.str("  ") + "\n" +
           backends_table(d.backends, false);
}

std::string render(const std::vector<BackendRow>& backends, OutputMode mode) {
    if (mode != OutputMode::Table) {
        Json a = Json::array();
        for (const auto& b : backends) a.push_back(to_json(b));
        return dump(Json{{"backends", a}}, mode);
    }
    return backends_table(backends, true);
}

// ---- maglev --------------------------------------------------------------------------------------

std::string render(const MaglevView& maglev, OutputMode mode) {
    const auto& m = maglev;
    if (mode != OutputMode::Table) {
        Json j;
        j["service_id"] = m.svc_id;
        j["frontend"] = m.frontend.str();
        j["size"] = m.size;
        Json a = Json::array();
        for (const auto& s : m.shares)
            a.push_back(Json{{"id", s.backend_id},
                             {"address", or_null(s.endpoint, [](const Endpoint& e) { return e.addr.str(); })},
                             {"port", or_null(s.endpoint, [](const Endpoint& e) { return e.port; })},
                             {"slots", s.slots},
                             {"share_pct", share_pct(s.slots, m.size)}});
        j["backends"] = a;
        if (m.full) j["table"] = m.table;
        return dump(j, mode);
    }
    const std::string title = "service " + num(m.svc_id) + ": " + m.frontend.str();
    if (m.size == 0) return title + ": no Maglev table (no usable backend)\n";
    Table t({{"BACKEND", Align::Right}, {"ADDRESS"}, {"SLOTS", Align::Right}, {"SHARE", Align::Right}});
    for (const auto& s : m.shares)
        t.add({num(s.backend_id), s.endpoint ? s.endpoint->str() : "-", num(s.slots),
               pct_str(share_pct(s.slots, m.size))});
    std::string out = title + ", Maglev table of " + num(m.size) + " slots\n" + t.str();
    if (!m.full) return out;
    constexpr std::size_t kPerLine = 16;
    out += "\nSLOT   BACKEND IDS\n";
    for (std::size_t i = 0; i < m.table.size(); i += kPerLine) {
        std::string line = num(i);
        line.resize(std::max<std::size_t>(line.size() + 1, 7), ' ');
        for (std::size_t k = i; k < std::min(i + kPerLine, m.table.size()); ++k)
            line += (k == i ? "" : " ") + num(m.table[k]);
        out += line + "\n";
    }
    return out;
}

// ---- conntrack -----------------------------------------------------------------------------------

std::string render(const FlowList& flows, OutputMode mode) {
    const auto& l = flows;
    if (mode != OutputMode::Table) {
        Json a = Json::array();
        for (const auto& f : l.flows) a.push_back(to_json(f));
        return dump(Json{{"flows", a}, {"matched", l.matched}}, mode);
    }
    Table t({{"CLIENT"},
             {"FRONTEND"},
             {"SVC", Align::Right},
             {"BACKEND_ID", Align::Right},
             {"BACKEND"},
             {"SNAT_PORT", Align::Right},
             {"STATE"},
             {"AGE", Align::Right}});
    for (const auto& f : l.flows)
        t.add({f.client.str(), f.frontend.str(), num(f.svc_id), num(f.backend_id),
               f.backend ? f.backend->str() : "(gone)", f.snat_port ? num(f.snat_port) : "-", flow_state_str(f.flags),
               age_str(f.age_ms)});
    std::string out = t.str();
    if (l.flows.size() < l.matched)
        out += "(" + num(l.flows.size()) + " of " + num(l.matched) + " flows shown: --limit)\n";
    return out;
}

std::string render(const FlushResult& flush, OutputMode mode) {
    const auto& f = flush;
    if (mode != OutputMode::Table)
        return dump(Json{{"service_id", f.svc_id ? Json(*f.svc_id) : Json(nullptr)}, {"removed", f.removed}}, mode);
    return "flushed " + num(f.removed) + " conntrack entries (forward and reverse)" +
           (f.svc_id ? " of service " + num(*f.svc_id) : std::string()) + "\n";
}

// ---- stats ---------------------------------------------------------------------------------------

std::string render(const StatsView& stats, OutputMode mode) {
    const auto& s = stats;
    if (mode != OutputMode::Table) {
        Json j;
        j["reasons"] = counter_json(s.reasons, kReasonNames);
        j["parse"] = s.parse ? counter_json(*s.parse, kParseStatNames) : Json(nullptr);
        if (s.sock) {
            Json sock = Json::object();
            for (std::size_t i = 0; i < kSockReasonCount; ++i) sock[std::string(kSockReasonNames[i])] = (*s.sock)[i];
            j["socket_lb"] = sock;
        } else {
            j["socket_lb"] = nullptr;
        }
        if (s.flow_cache)
            j["flow_cache"] =
                Json{{"hits", s.flow_cache->hits}, {"misses", s.flow_cache->misses}, {"fills", s.flow_cache->fills}};
        else j["flow_cache"] = nullptr;
        return dump(j, mode);
    }
    std::string out = counter_section("REASON", s.reasons, kReasonNames, s.all);
    if (s.parse) out += "\n" + counter_section("PARSER", *s.parse, kParseStatNames, s.all);
    if (s.flow_cache) {
        Table t({{"FLOW_CACHE"}, {"COUNT", Align::Right}});
        t.add({"hits", num(s.flow_cache->hits)});
        t.add({"misses", num(s.flow_cache->misses)});
        t.add({"fills", num(s.flow_cache->fills)});
        out += "\n" + t.str();
    }
    if (s.sock) {
        Table t({{"SOCKET_LB"}, {"COUNT", Align::Right}});
        for (std::size_t i = 0; i < kSockReasonCount; ++i)
            if (s.all || (*s.sock)[i]) t.add({std::string(kSockReasonNames[i]), num((*s.sock)[i])});
        out += "\n" + t.str() + (t.rows() ? "" : "(all zero)\n");
    }
    return out;
}

// ---- trace ---------------------------------------------------------------------------------------

std::string render(const TraceResult& trace, OutputMode mode) {
    const auto& r = trace;
    const std::string reason(reason_name(static_cast<kxlb_reason>(r.reason)));
    if (mode != OutputMode::Table) {
        Json packet = to_json(r.in);
        packet["tcp_flags"] = r.in.proto == IPPROTO_TCP ? Json(tcp_flags_str(r.tcp_flags)) : Json(nullptr);
        packet["ifname"] = r.ifname.empty() ? Json(nullptr) : Json(r.ifname);
        packet["ifindex"] = r.ifindex;
        Json j;
        j["packet"] = packet;
        j["verdict"] = verdict_name(r.verdict);
        j["reason"] = reason;
        j["flow"] = trace_flow_str(r.flow);
        j["service"] = r.svc_id
                           ? Json{{"id", *r.svc_id}, {"frontend", r.frontend ? Json(r.frontend->str()) : Json(nullptr)}}
                           : Json(nullptr);
        j["backend"] = r.backend_id
                           ? Json{{"id", *r.backend_id},
                                  {"address", or_null(r.backend, [](const Endpoint& e) { return e.addr.str(); })},
                                  {"port", or_null(r.backend, [](const Endpoint& e) { return e.port; })}}
                           : Json(nullptr);
        j["snat_port"] = or_null(r.snat_port, [](std::uint16_t p) { return p; });
        j["before"] = to_json(r.in);
        j["after"] = r.out ? to_json(*r.out) : Json(nullptr);
        j["egress"] = r.egress.empty() ? Json(nullptr) : Json(r.egress);
        return dump(j, mode);
    }
    KeyValues kv;
    std::string packet = headers_str(r.in);
    if (r.in.proto == IPPROTO_TCP) packet += " [" + tcp_flags_str(r.tcp_flags) + "]";
    packet += r.ifname.empty() ? " (no ingress interface)" : " in " + r.ifname;
    kv.add("packet", packet);
    kv.add("verdict", verdict_name(r.verdict) + " (" + reason + ")");
    kv.add("flow", trace_flow_str(r.flow));
    kv.add("service", r.svc_id ? num(*r.svc_id) + (r.frontend ? " " + r.frontend->str() : "") : "-");
    kv.add("backend", r.backend_id ? num(*r.backend_id) + (r.backend ? " " + r.backend->str() : " (gone)") : "-");
    kv.add("snat port", r.snat_port ? num(*r.snat_port) : "-");
    kv.add("before", headers_str(r.in));
    kv.add("after", r.out ? headers_str(*r.out) : "unchanged");
    kv.add("egress", r.egress.empty() ? "-" : r.egress);
    return kv.str();
}

// ---- version and errors --------------------------------------------------------------------------

std::string render_version(OutputMode mode) {
    if (mode != OutputMode::Table) return dump(Json{{"version", KXLB_VERSION}, {"abi", KXLB_ABI_VERSION}}, mode);
    return std::string("kxlbctl ") + KXLB_VERSION + " (BPF ABI " + std::to_string(KXLB_ABI_VERSION) + ")\n";
}

std::string render_error(const std::string& message, OutputMode mode) {
    if (mode != OutputMode::Table) return dump(Json{{"error", message}}, mode);
    return "kxlbctl: error: " + message + "\n";
}

}  // namespace kxlb::ctl
