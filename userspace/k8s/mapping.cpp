// Kubernetes -> agent model: Service + EndpointSlices -> ServiceConfigs per port, family and role.
#include "k8s/mapping.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

namespace kxlb::k8s {

namespace {

const char* family_word(std::uint8_t family) { return family == AF_INET6 ? "ipv6" : "ipv4"; }

std::uint8_t family_of(AddressType t) {
    switch (t) {
        case AddressType::IPv4: return AF_INET;
        case AddressType::IPv6: return AF_INET6;
        case AddressType::FQDN: break;
    }
    return 0;
}

// The port a slice gives for service port `sp` (matched by name and protocol), or 0 if the slice does
// not carry it. A slice port without a number means "all ports": the numeric targetPort applies then.
std::uint16_t slice_port(const EndpointSlice& slice, const ServicePort& sp) {
    for (const auto& p : slice.ports) {
        if (p.name != sp.name || p.protocol != sp.protocol) continue;
        if (p.port) return *p.port;
        if (!sp.target_port.is_name() && sp.target_port.number > 0 && sp.target_port.number <= 65535)
            return static_cast<std::uint16_t>(sp.target_port.number);
        return 0;
    }
    return 0;
}

// Backends of one service port and family; `local_only`: endpoints on `node` only. Ready endpoints
// serve; serving+terminating ones are draining (existing flows only), unless no endpoint is ready:
// then they serve, as kube-proxy does (a rolling update of a one-replica Deployment, or a node
// draining under externalTrafficPolicy: Local, keeps answering). The rest are left out. An address
// in several slices (a slice move in progress) counts once, serving winning over draining.
std::vector<agent::BackendConfig> backends_for(const ServiceState& st, const ServicePort& sp, std::uint8_t family,
                                               bool local_only, const std::string& node) {
    std::map<std::pair<IpAddr, std::uint16_t>, bool> found;  // -> draining
    std::set<std::pair<IpAddr, std::uint16_t>> on_node;      // endpoints whose nodeName is this node
    for (const auto& slice : st.slices) {
        if (family_of(slice.address_type) != family) continue;
        const std::uint16_t port = slice_port(slice, sp);
        if (port == 0) continue;
        for (const auto& ep : slice.endpoints) {
            if (ep.addresses.empty()) continue;
            if (local_only && ep.node_name != node) continue;
            bool draining;
            if (ep.conditions.ready && !ep.conditions.terminating) draining = false;
            else if (ep.conditions.serving && ep.conditions.terminating) draining = true;
            else continue;
            auto addr = IpAddr::parse(ep.addresses.front());  // Kubernetes uses the first address only
            if (!addr || addr->family != family) continue;
            auto [it, inserted] = found.emplace(std::pair{*addr, port}, draining);
            if (!inserted) it->second = it->second && draining;
            if (!node.empty() && ep.node_name == node) on_node.insert(it->first);
        }
    }
    const bool none_ready = std::all_of(found.begin(), found.end(), [](const auto& kv) { return kv.second; });
    std::vector<agent::BackendConfig> out;
    for (const auto& [key, draining] : found) {
        agent::BackendConfig b;
        b.addr = key.first;
        b.port = key.second;
        b.draining = draining && !none_ready;
        // A pod of this node is delivered locally unless the agent finds it behind a balancing NIC.
        b.local = on_node.count(key) != 0;
        out.push_back(b);
    }
    return out;
}

Result<std::vector<Cidr>> source_ranges(const Service& svc) {
    std::vector<Cidr> out;
    for (const auto& text : svc.load_balancer_source_ranges) {
        const auto slash = text.find('/');
        auto addr = IpAddr::parse(std::string_view(text).substr(0, slash));
        int len = -1;
        if (slash != std::string::npos) {
            const char* b = text.data() + slash + 1;
            const char* e = text.data() + text.size();
            auto [ptr, ec] = std::from_chars(b, e, len);
            if (ec != std::errc() || ptr != e || b == e) len = -1;
        }
        const int max = addr && addr->family == AF_INET6 ? 128 : 32;
        if (!addr || len < 0 || len > max)
            return Error::invalid("loadBalancerSourceRanges: \"" + text + "\" is not a CIDR (e.g. 203.0.113.0/24)");
        out.push_back(Cidr{*addr, static_cast<std::uint8_t>(len)}.network());  // kube-proxy ignores host bits
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

}  // namespace

std::string service_config_name(const std::string& ns, const std::string& name, const ServicePort& port,
                                std::uint8_t family, const std::string& role) {
    const std::string p = port.name.empty() ? std::to_string(port.port) : port.name;
    return "k8s." + ns + "." + name + "." + p + "." + family_word(family) + "." + role;
}

Result<std::chrono::milliseconds> parse_annotation_duration(std::string_view text) {
    std::uint64_t n = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    const std::string_view unit(ptr, static_cast<std::size_t>(text.data() + text.size() - ptr));
    if (ec != std::errc() || ptr == text.data() || n == 0 || n > 3600000)
        return Error::invalid("\"" + std::string(text) + "\" is not a duration (e.g. 500ms, 2s, 1m)");
    if (unit == "ms") return std::chrono::milliseconds(n);
    if (unit == "s") return std::chrono::milliseconds(n * 1000);
    if (unit == "m") return std::chrono::milliseconds(n * 60000);
    return Error::invalid("\"" + std::string(text) + "\" is not a duration (e.g. 500ms, 2s, 1m)");
}

Result<std::optional<agent::HealthCheckSpec>> health_check_from_annotations(
    const std::map<std::string, std::string>& annotations) {
    const auto it = annotations.find(kHealthCheckAnnotation);
    if (it == annotations.end()) return std::optional<agent::HealthCheckSpec>{};
    agent::HealthCheckSpec hc;
    const std::string& v = it->second;
    const auto bad = [&](const std::string& why) {
        return Error::invalid(std::string(kHealthCheckAnnotation) + ": \"" + v + "\" " + why +
                              "; use \"tcp\", \"http:/path\" or \"https:/path\"");
    };
    if (v == "tcp") {
        hc.type = agent::HealthCheckSpec::Type::Tcp;
    } else {
        const auto colon = v.find(':');
        const std::string scheme = v.substr(0, colon);
        if (scheme == "http") hc.type = agent::HealthCheckSpec::Type::Http;
        else if (scheme == "https") hc.type = agent::HealthCheckSpec::Type::Https;
        else return bad("is not a known check");
        if (colon != std::string::npos) hc.path = v.substr(colon + 1);
        if (hc.path.empty() || hc.path.front() != '/') return bad("needs a path starting with '/'");
        for (char c : hc.path)
            if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return bad("has a path with spaces or controls");
    }
    for (auto [key, field] : {std::pair{kHealthCheckIntervalAnnotation, &hc.interval},
                              std::pair{kHealthCheckTimeoutAnnotation, &hc.timeout}}) {
        if (auto a = annotations.find(key); a != annotations.end()) {
            auto d = parse_annotation_duration(a->second);
            if (!d) return Error::invalid(std::string(key) + ": " + d.error().message);
            *field = *d;
        }
    }
    if (annotations.count(kHealthCheckIntervalAnnotation) && !annotations.count(kHealthCheckTimeoutAnnotation))
        hc.timeout = std::min(hc.timeout, hc.interval / 2);
    if (hc.timeout >= hc.interval)
        return Error::invalid(std::string(kHealthCheckTimeoutAnnotation) + ": the timeout (" +
                              std::to_string(hc.timeout.count()) + "ms) must be shorter than the interval (" +
                              std::to_string(hc.interval.count()) + "ms)");
    if (auto a = annotations.find(kHealthCheckInsecureAnnotation); a != annotations.end()) {
        if (a->second != "true" && a->second != "false")
            return Error::invalid(std::string(kHealthCheckInsecureAnnotation) + ": \"" + a->second +
                                  "\" must be \"true\" or \"false\"");
        hc.insecure = a->second == "true";
    }
    return std::optional<agent::HealthCheckSpec>{hc};
}

ServiceMapping map_service(const ServiceState& state, const NodeInfo& node) {
    ServiceMapping out;
    if (!state.service) return out;
    const Service& svc = *state.service;
    const std::string who = "service " + svc.meta.key();
    if (svc.type == ServiceType::ExternalName || svc.headless) return out;

    auto ranges = source_ranges(svc);
    if (!ranges) {
        out.problems.push_back(who + ": " + ranges.error().message + "; service not programmed");
        return out;
    }
    std::optional<agent::HealthCheckSpec> hc;
    if (auto h = health_check_from_annotations(svc.meta.annotations); h) hc = *h;
    else out.problems.push_back(who + ": " + h.error().message + "; programmed without health checks");

    std::optional<std::chrono::seconds> affinity;
    if (svc.session_affinity_client_ip)
        affinity = std::chrono::seconds(std::clamp<std::uint32_t>(svc.session_affinity_timeout_s, 1, 86400));

    for (const auto& sp : svc.ports) {
        if (sp.protocol != IPPROTO_TCP && sp.protocol != IPPROTO_UDP) {
            ++out.skipped_ports;
            out.problems.push_back(who + ": port " + (sp.name.empty() ? std::to_string(sp.port) : sp.name) + "/" +
                                   proto_name(sp.protocol) + " skipped (only TCP and UDP are balanced)");
            continue;
        }
        for (std::uint8_t family : {std::uint8_t{AF_INET}, std::uint8_t{AF_INET6}}) {
            const auto add = [&](const std::string& role, const std::vector<IpAddr>& addrs, std::uint16_t port,
                                 bool local_only) -> agent::ServiceConfig* {
                agent::ServiceConfig c;
                for (const auto& a : addrs)
                    if (a.family == family && port != 0) c.frontends.push_back(Frontend{a, port, sp.protocol});
                if (c.frontends.empty()) return nullptr;
                std::sort(c.frontends.begin(), c.frontends.end());
                c.frontends.erase(std::unique(c.frontends.begin(), c.frontends.end()), c.frontends.end());
                c.name = service_config_name(svc.meta.namespace_, svc.meta.name, sp, family, role);
                c.affinity_timeout = affinity;
                c.health_check = hc;
                c.backends = backends_for(state, sp, family, local_only, node.name);
                out.services.push_back(std::move(c));
                return &out.services.back();
            };
            if (auto* c = add("cluster", svc.cluster_ips, sp.port, svc.internal_traffic_policy == TrafficPolicy::Local))
                c->socket_lb = true;
            const bool etp_local = svc.external_traffic_policy == TrafficPolicy::Local;
            if (svc.type == ServiceType::LoadBalancer) {
                std::vector<Cidr> fam_ranges;
                for (const auto& r : *ranges)
                    if (r.addr.family == family) fam_ranges.push_back(r);
                const bool has_family_ip = std::any_of(svc.load_balancer_ips.begin(), svc.load_balancer_ips.end(),
                                                       [&](const IpAddr& a) { return a.family == family; });
                if (!ranges->empty() && fam_ranges.empty() && has_family_ip) {
                    out.problems.push_back(who + ": loadBalancerSourceRanges has no " + family_word(family) +
                                           " range; its " + family_word(family) +
                                           " load balancer IPs are not programmed");
                } else if (auto* c = add("lb", svc.load_balancer_ips, sp.port, etp_local)) {
                    c->source_ranges = std::move(fam_ranges);
                }
            }
            auto* e = add("external", svc.external_ips, sp.port, etp_local);
            if ((svc.type == ServiceType::NodePort || svc.type == ServiceType::LoadBalancer) && sp.node_port != 0) {
                std::vector<Frontend> nps;
                for (const auto& a : node.addresses)
                    if (a.family == family) nps.push_back(Frontend{a, sp.node_port, sp.protocol});
                if (!nps.empty()) {
                    if (!e) {
                        e = add("external", node.addresses, sp.node_port, etp_local);
                    } else {
                        e->frontends.insert(e->frontends.end(), nps.begin(), nps.end());
                        std::sort(e->frontends.begin(), e->frontends.end());
                        e->frontends.erase(std::unique(e->frontends.begin(), e->frontends.end()), e->frontends.end());
                    }
                }
            }
        }
    }
    std::sort(out.services.begin(), out.services.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    // Two ports with the same name cannot exist (API validation); keep the first if they do anyway.
    out.services.erase(std::unique(out.services.begin(), out.services.end(),
                                   [](const auto& a, const auto& b) { return a.name == b.name; }),
                       out.services.end());
    return out;
}

}  // namespace kxlb::k8s
