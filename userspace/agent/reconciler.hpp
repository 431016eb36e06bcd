// Desired state -> datapath: turns the configured services and the health of their backends into
// the per-frontend ServiceSpecs the LbProgrammer writes, and applies only what changed. The
// health policy (what "all backends down" means) lives here, in one place.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "agent/config.hpp"
#include "lib/lb_programmer.hpp"

namespace kxlb::agent {

// Identifies one backend of one configured service (health is per service: the same address can
// pass one service's check and fail another's).
struct BackendRef {
    std::string service;
    BackendIdentity backend;
    auto operator<=>(const BackendRef&) const = default;
};

// Outcome of one apply(): what was written, and what failed (retried by the next apply).
struct ApplyReport {
    int upserted = 0;  // frontends whose spec changed and was written
    int removed = 0;
    std::vector<std::string> failures;  // one line per failed frontend
    bool ok() const { return failures.empty(); }
};

// One entry of a delta of configured services: `config` replaces (or adds) the service `name`;
// nullptr removes it.
struct ServiceChange {
    std::string name;
    ServicePtr config;
};

class Reconciler {
public:
    // Replaces the configured services (a reload). Health of backends that stay is kept; a backend
    // that is new starts healthy (see docs/agent.md: probes then take it out within fall x interval).
    void set_services(std::vector<ServicePtr> services);
    void set_services(const std::vector<ServiceConfig>& services);
    // Replaces, adds or removes the named services only, with the same health rules as set_services;
    // the cost grows with the size of the delta, not with the number of services. Frontends that a
    // changed service no longer holds (and no other service took) are withdrawn by the next
    // apply_services() or apply().
    void update_services(const std::vector<ServiceChange>& changes);
    // The configured services by name; the service holding a frontend (nullptr: none).
    const std::map<std::string, ServicePtr>& services() const { return services_; }
    const ServiceConfig* find(const std::string& service) const;
    const std::string* owner(const Frontend& fe) const;

    // Which backends are on this node (BackendSpec::local): one at an address of the node itself (a
    // host-network process such as a static-pod apiserver), and one with BackendConfig::local unless
    // it lies in `via_nics`, the prefixes connected to the interfaces XDP runs on (such a backend is
    // reached through the balancing NIC like any remote one, whatever its Kubernetes nodeName says).
    // True if anything changed; the caller then applies every service.
    bool set_node_addressing(std::set<IpAddr> own, std::vector<Cidr> via_nics);

    // Records a probe decision. Returns true if it changes the desired datapath state (of that
    // service only: the cost does not grow with the number of services).
    bool set_health(const BackendRef& ref, bool healthy);
    bool healthy(const BackendRef& ref) const;

    // The specs the datapath should hold, one per frontend. A backend serves a frontend of its own
    // family only (full-NAT keeps the address family). Unhealthy backends are draining (their
    // established flows continue, they get no new ones). When every checked backend of a service is
    // unhealthy, AllDownPolicy::KeepLastHealthy keeps the last healthy set serving (fail open);
    // NoBackends drains them all (clients get the no-backend answer).
    std::vector<ServiceSpec> desired() const;
    // The specs of one configured service (empty if there is no such service).
    std::vector<ServiceSpec> desired(const std::string& service) const;

    // Writes the difference between desired() and what programmer holds: frontends no longer
    // desired are removed, changed ones upserted (an unchanged spec costs nothing). Every frontend
    // is applied atomically by the programmer; a failure is reported and the rest still applied.
    ApplyReport apply(LbProgrammer& programmer);
    // Withdraws the frontends update_services() left behind, then writes the changed frontends of
    // the named services only (after a delta, or a health change of one of their backends). A failed
    // withdrawal stays pending for the next apply.
    ApplyReport apply_services(LbProgrammer& programmer, const std::vector<std::string>& services);

private:
    std::map<std::string, ServicePtr> services_;
    std::map<Frontend, std::string> owners_;  // frontend -> service holding it
    std::set<Frontend> withdrawn_;            // left by update_services(), not yet removed
    std::set<IpAddr> local_addrs_;
    std::vector<Cidr> via_nics_;
    bool is_local(const BackendConfig& b) const;
    std::map<BackendRef, bool> health_;  // absent: healthy
    // Per service: the backends that were healthy the last time at least one was.
    std::map<std::string, std::set<BackendIdentity>> last_healthy_;
    void remember_healthy(const ServiceConfig& svc);
    // Drops the health and history of `name`'s backends that `svc` (nullptr: gone) does not have.
    void forget_backends(const std::string& name, const ServiceConfig* svc);
    void desired_of(const ServiceConfig& svc, std::vector<ServiceSpec>& out) const;
    static void upsert_changed(LbProgrammer& programmer, const std::vector<ServiceSpec>& want, ApplyReport& report);
};

// Datapath flags of a configured service.
std::uint32_t service_flags(const ServiceConfig& svc);

}  // namespace kxlb::agent
