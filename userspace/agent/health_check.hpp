// What a health check of a backend is (parsed by config.cpp, run by prober.cpp): the one
// definition both sides share.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace kxlb::agent {

struct HealthCheckSpec {
    enum class Type { Tcp, Http, Https };
    Type type = Type::Tcp;
    std::string path = "/";     // http/https: request path (starts with '/')
    int expected_status = 200;  // http/https: the status that means healthy
    std::string host;           // http/https: Host header and TLS SNI; empty: the backend address
    std::string ca_file;        // https: verify the server against this PEM bundle
    bool insecure = false;      // https: skip certificate verification (explicit opt-in only)
    std::chrono::milliseconds interval{2000};
    std::chrono::milliseconds timeout{1000};  // < interval
    std::uint32_t rise = 2;                   // consecutive successes that make an unhealthy backend healthy
    std::uint32_t fall = 3;                   // consecutive failures that make a healthy backend unhealthy
    std::uint16_t port = 0;                   // 0: the backend's own port
    bool operator==(const HealthCheckSpec&) const = default;
};

const char* to_string(HealthCheckSpec::Type type);  // "tcp", "http", "https"

}  // namespace kxlb::agent
