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

class Reconciler {
public:
    // Replaces the configured services (a reload). Health of backends that stay is kept; a backend
    // that is new starts healthy (see docs/agent.md: probes then take it out within fall x interval).
    void set_services(std::vector<ServiceConfig> services);
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
    ApplyReport apply(LbProgrammer& programmer) const;
    // Applies one service's frontends only (after a health change of one of its backends).
    ApplyReport apply_service(LbProgrammer& programmer, const std::string& service) const;

private:
    std::vector<ServiceConfig> services_;
    std::map<std::string, std::size_t> index_;  // name -> position in services_
    std::map<BackendRef, bool> health_;         // absent: healthy
    // Per service: the backends that were healthy the last time at least one was.
    std::map<std::string, std::set<BackendIdentity>> last_healthy_;
    void remember_healthy(const ServiceConfig& svc);
    const ServiceConfig* find(const std::string& service) const;
    void desired_of(const ServiceConfig& svc, std::vector<ServiceSpec>& out) const;
    static void upsert_changed(LbProgrammer& programmer, const std::vector<ServiceSpec>& want, ApplyReport& report);
};

// Datapath flags of a configured service.
std::uint32_t service_flags(const ServiceConfig& svc);

}  // namespace kxlb::agent
