// JSON → typed Service / EndpointSlice. A small throwing walker keeps the field paths; the public
// functions catch and return Result errors, so no malformed object can escape as an exception.
#include "k8s/objects.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <functional>
#include <limits>
#include <string_view>
#include <utility>

namespace kxlb::k8s {
namespace {

using nlohmann::json;

struct ParseError {
    std::string message;
};

[[noreturn]] void fail(const std::string& path, const std::string& what) { throw ParseError{path + ": " + what}; }

std::string shown(const json& v) {
    auto s = v.dump();
    return s.size() > 64 ? s.substr(0, 61) + "..." : s;
}

std::string join(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
}

// The member `key` of object `o`, or null when absent or JSON null.
const json* member(const json& o, std::string_view key) {
    const auto it = o.find(key);
    if (it == o.end() || it->is_null()) return nullptr;
    return &*it;
}

const json& object_at(const json& o, std::string_view key, const std::string& path) {
    static const json kEmpty = json::object();
    const json* v = member(o, key);
    if (!v) return kEmpty;
    if (!v->is_object()) fail(join(path, key), "expected an object, got " + shown(*v));
    return *v;
}

std::string string_at(const json& o, std::string_view key, const std::string& path, std::string def = "") {
    const json* v = member(o, key);
    if (!v) return def;
    if (!v->is_string()) fail(join(path, key), "expected a string, got " + shown(*v));
    return v->get<std::string>();
}

std::optional<bool> bool_at(const json& o, std::string_view key, const std::string& path) {
    const json* v = member(o, key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail(join(path, key), "expected true or false, got " + shown(*v));
    return v->get<bool>();
}

std::optional<std::int64_t> int_at(const json& o, std::string_view key, const std::string& path, std::int64_t lo,
                                   std::int64_t hi) {
    const json* v = member(o, key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer() || v->get<std::int64_t>() < lo || v->get<std::int64_t>() > hi)
        fail(join(path, key),
             "expected an integer " + std::to_string(lo) + "-" + std::to_string(hi) + ", got " + shown(*v));
    return v->get<std::int64_t>();
}

void each_at(const json& o, std::string_view key, const std::string& path,
             const std::function<void(const json&, const std::string&)>& fn) {
    const json* v = member(o, key);
    if (!v) return;
    const auto p = join(path, key);
    if (!v->is_array()) fail(p, "expected a list, got " + shown(*v));
    for (std::size_t i = 0; i < v->size(); ++i) fn((*v)[i], p + "[" + std::to_string(i) + "]");
}

std::vector<std::string> strings_at(const json& o, std::string_view key, const std::string& path) {
    std::vector<std::string> out;
    each_at(o, key, path, [&](const json& v, const std::string& p) {
        if (!v.is_string()) fail(p, "expected a string, got " + shown(v));
        out.push_back(v.get<std::string>());
    });
    return out;
}

std::map<std::string, std::string> string_map_at(const json& o, std::string_view key, const std::string& path) {
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : object_at(o, key, path).items()) {
        if (!v.is_string()) fail(join(path, key) + "." + k, "expected a string, got " + shown(v));
        out.emplace(k, v.get<std::string>());
    }
    return out;
}

template <typename E>
E enum_of(const json& v, const std::string& path, std::initializer_list<std::pair<std::string_view, E>> words) {
    std::string allowed;
    if (v.is_string())
        for (const auto& [w, e] : words)
            if (v.get<std::string>() == w) return e;
    for (const auto& [w, e] : words) allowed += (allowed.empty() ? "" : ", ") + std::string(w);
    fail(path, "expected one of " + allowed + ", got " + shown(v));
}

template <typename E>
E enum_at(const json& o, std::string_view key, const std::string& path, E def,
          std::initializer_list<std::pair<std::string_view, E>> words) {
    const json* v = member(o, key);
    return v ? enum_of(*v, join(path, key), words) : def;
}

std::uint8_t protocol_at(const json& o, const std::string& path) {
    return enum_at<std::uint8_t>(o, "protocol", path, IPPROTO_TCP,
                                 {{"TCP", IPPROTO_TCP}, {"UDP", IPPROTO_UDP}, {"SCTP", IPPROTO_SCTP}});
}

IpAddr ip_of(const json& v, const std::string& path, std::uint8_t family = 0) {
    if (!v.is_string()) fail(path, "expected an IP address string, got " + shown(v));
    auto ip = IpAddr::parse(v.get<std::string>());
    if (!ip) fail(path, "\"" + v.get<std::string>() + "\" is not an IP address");
    if (family != 0 && ip->family != family)
        fail(path, "\"" + v.get<std::string>() + "\" is not an " + (family == AF_INET ? "IPv4" : "IPv6") + " address");
    return *ip;
}

std::vector<IpAddr> ips_at(const json& o, std::string_view key, const std::string& path) {
    std::vector<IpAddr> out;
    each_at(o, key, path, [&](const json& v, const std::string& p) { out.push_back(ip_of(v, p)); });
    return out;
}

std::string trim(std::string s) {
    s.erase(s.find_last_not_of(" \t") + 1);
    s.erase(0, s.find_first_not_of(" \t"));
    return s;
}

ObjectMeta meta_of(const json& obj) {
    if (!obj.is_object()) fail("(object)", "expected a JSON object, got " + shown(obj));
    const auto& m = object_at(obj, "metadata", "");
    ObjectMeta meta;
    meta.name = string_at(m, "name", "metadata");
    if (meta.name.empty()) fail("metadata.name", "missing");
    meta.namespace_ = string_at(m, "namespace", "metadata");
    meta.uid = string_at(m, "uid", "metadata");
    meta.resource_version = string_at(m, "resourceVersion", "metadata");
    meta.labels = string_map_at(m, "labels", "metadata");
    meta.annotations = string_map_at(m, "annotations", "metadata");
    return meta;
}

ObjectMeta namespaced_meta_of(const json& obj) {
    auto meta = meta_of(obj);
    if (meta.namespace_.empty()) fail("metadata.namespace", "missing (" + meta.name + " must be namespaced)");
    return meta;
}

ServicePort service_port_of(const json& v, const std::string& p) {
    if (!v.is_object()) fail(p, "expected an object, got " + shown(v));
    ServicePort sp;
    sp.name = string_at(v, "name", p);
    sp.protocol = protocol_at(v, p);
    const auto port = int_at(v, "port", p, 1, 65535);
    if (!port) fail(p + ".port", "missing");
    sp.port = static_cast<std::uint16_t>(*port);
    sp.node_port = static_cast<std::uint16_t>(int_at(v, "nodePort", p, 0, 65535).value_or(0));
    const json* tp = member(v, "targetPort");
    if (!tp) {
        sp.target_port.number = sp.port;
    } else if (tp->is_string() && !tp->get<std::string>().empty()) {
        sp.target_port.name = tp->get<std::string>();
    } else {
        sp.target_port.number = static_cast<std::int32_t>(*int_at(v, "targetPort", p, 1, 65535));
    }
    return sp;
}

Service service_of(const json& obj) {
    Service s;
    s.meta = namespaced_meta_of(obj);
    const auto& spec = object_at(obj, "spec", "");
    s.type = enum_at(spec, "type", "spec", ServiceType::ClusterIP,
                     {{"ClusterIP", ServiceType::ClusterIP},
                      {"NodePort", ServiceType::NodePort},
                      {"LoadBalancer", ServiceType::LoadBalancer},
                      {"ExternalName", ServiceType::ExternalName}});
    // clusterIPs (dual-stack) supersedes clusterIP; "None" marks a headless service.
    const bool from_list = member(spec, "clusterIPs") != nullptr;
    std::vector<std::string> cluster_ips = strings_at(spec, "clusterIPs", "spec");
    if (!from_list)
        if (auto ip = string_at(spec, "clusterIP", "spec"); !ip.empty()) cluster_ips.push_back(ip);
    for (std::size_t i = 0; i < cluster_ips.size(); ++i) {
        if (cluster_ips[i] == "None") {
            s.headless = true;
            continue;
        }
        s.cluster_ips.push_back(
            ip_of(cluster_ips[i], from_list ? "spec.clusterIPs[" + std::to_string(i) + "]" : "spec.clusterIP"));
    }
    each_at(spec, "ipFamilies", "spec", [&](const json& v, const std::string& p) {
        s.ip_families.push_back(enum_of<std::uint8_t>(v, p, {{"IPv4", AF_INET}, {"IPv6", AF_INET6}}));
    });
    each_at(spec, "ports", "spec",
            [&](const json& v, const std::string& p) { s.ports.push_back(service_port_of(v, p)); });
    s.external_ips = ips_at(spec, "externalIPs", "spec");
    for (auto& r : strings_at(spec, "loadBalancerSourceRanges", "spec"))
        s.load_balancer_source_ranges.push_back(trim(r));
    const auto policy = {std::pair<std::string_view, TrafficPolicy>{"Cluster", TrafficPolicy::Cluster},
                         std::pair<std::string_view, TrafficPolicy>{"Local", TrafficPolicy::Local}};
    s.external_traffic_policy = enum_at(spec, "externalTrafficPolicy", "spec", TrafficPolicy::Cluster, policy);
    s.internal_traffic_policy = enum_at(spec, "internalTrafficPolicy", "spec", TrafficPolicy::Cluster, policy);
    s.session_affinity_client_ip =
        enum_at(spec, "sessionAffinity", "spec", false, {{"None", false}, {"ClientIP", true}});
    const auto& client_ip =
        object_at(object_at(spec, "sessionAffinityConfig", "spec"), "clientIP", "spec.sessionAffinityConfig");
    if (auto t = int_at(client_ip, "timeoutSeconds", "spec.sessionAffinityConfig.clientIP", 1, 86400))
        s.session_affinity_timeout_s = static_cast<std::uint32_t>(*t);
    s.has_selector = !string_map_at(spec, "selector", "spec").empty();
    s.external_name = string_at(spec, "externalName", "spec");

    const auto& lb = object_at(object_at(obj, "status", ""), "loadBalancer", "status");
    each_at(lb, "ingress", "status.loadBalancer", [&](const json& v, const std::string& p) {
        if (!v.is_object()) fail(p, "expected an object, got " + shown(v));
        if (const json* ip = member(v, "ip")) s.load_balancer_ips.push_back(ip_of(*ip, p + ".ip"));
    });
    return s;
}

EndpointSlice slice_of(const json& obj) {
    EndpointSlice es;
    es.meta = namespaced_meta_of(obj);
    if (auto it = es.meta.labels.find(kServiceNameLabel); it != es.meta.labels.end()) es.service_name = it->second;
    if (!member(obj, "addressType")) fail("addressType", "missing");
    es.address_type = enum_at(obj, "addressType", "", AddressType::IPv4,
                              {{"IPv4", AddressType::IPv4}, {"IPv6", AddressType::IPv6}, {"FQDN", AddressType::FQDN}});
    each_at(obj, "ports", "", [&](const json& v, const std::string& p) {
        if (!v.is_object()) fail(p, "expected an object, got " + shown(v));
        EndpointPort ep;
        ep.name = string_at(v, "name", p);
        ep.protocol = protocol_at(v, p);
        if (auto port = int_at(v, "port", p, 1, 65535)) ep.port = static_cast<std::uint16_t>(*port);
        es.ports.push_back(std::move(ep));
    });
    const std::uint8_t family = es.address_type == AddressType::IPv4   ? AF_INET
                                : es.address_type == AddressType::IPv6 ? AF_INET6
                                                                       : 0;
    each_at(obj, "endpoints", "", [&](const json& v, const std::string& p) {
        if (!v.is_object()) fail(p, "expected an object, got " + shown(v));
        Endpoint ep;
        each_at(v, "addresses", p, [&](const json& a, const std::string& ap) {
            if (family != 0) ip_of(a, ap, family);
            else if (!a.is_string()) fail(ap, "expected a string, got " + shown(a));
            ep.addresses.push_back(a.get<std::string>());
        });
        if (ep.addresses.empty()) fail(p + ".addresses", "missing (an endpoint has at least one address)");
        const auto& cond = object_at(v, "conditions", p);
        const auto cp = p + ".conditions";
        ep.conditions.ready = bool_at(cond, "ready", cp).value_or(true);
        ep.conditions.serving = bool_at(cond, "serving", cp).value_or(true);
        ep.conditions.terminating = bool_at(cond, "terminating", cp).value_or(false);
        ep.node_name = string_at(v, "nodeName", p);
        ep.zone = string_at(v, "zone", p);
        es.endpoints.push_back(std::move(ep));
    });
    return es;
}

template <typename T>
Result<T> guarded(const json& obj, std::string_view kind, T (*fn)(const json&)) {
    try {
        return fn(obj);
    } catch (const ParseError& e) {
        std::string who;
        if (obj.is_object())
            if (const auto* m = member(obj, "metadata"); m && m->is_object()) {
                const auto ns = m->value("namespace", json()), name = m->value("name", json());
                if (name.is_string())
                    who = (ns.is_string() ? ns.get<std::string>() + "/" : "") + name.get<std::string>();
            }
        return Error::invalid(std::string(kind) + (who.empty() ? "" : " " + who) + ": " + e.message);
    } catch (const json::exception& e) {  // defensive: the walker checks types before every get<>
        return Error::invalid(std::string(kind) + ": " + e.what());
    }
}

}  // namespace

Result<ObjectMeta> parse_meta(const json& obj) { return guarded<ObjectMeta>(obj, "object", &meta_of); }
Result<Service> parse_service(const json& obj) { return guarded<Service>(obj, "Service", &service_of); }
Result<EndpointSlice> parse_endpoint_slice(const json& obj) {
    return guarded<EndpointSlice>(obj, "EndpointSlice", &slice_of);
}

}  // namespace kxlb::k8s
