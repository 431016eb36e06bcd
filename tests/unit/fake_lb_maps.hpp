// In-memory LbMaps for unit tests: records the datapath state the programmer produced and can be
// told to fail a given operation, to test rollback.
#pragma once

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "lib/lb_maps.hpp"

namespace kxlb::test {

struct VipKeyLess {
    bool operator()(const kxlb_vip_key& a, const kxlb_vip_key& b) const { return std::memcmp(&a, &b, sizeof(a)) < 0; }
};
struct VipAddrLess {
    bool operator()(const kxlb_vip_addr_key& a, const kxlb_vip_addr_key& b) const {
        return std::memcmp(&a, &b, sizeof(a)) < 0;
    }
};

struct SrcRangeLess {
    bool operator()(const kxlb_src_range_key& a, const kxlb_src_range_key& b) const {
        return std::memcmp(&a, &b, sizeof(a)) < 0;
    }
};

class FakeLbMaps final : public LbMaps {
public:
    // The nth (1-based) call of operation `op` fails with EIO; 0 disables.
    void fail(const std::string& op, int nth = 1) {
        fail_op_ = op;
        fail_countdown_ = nth;
    }

    Status set_config(const kxlb_config& cfg) override {
        if (auto s = check("set_config"); !s) return s;
        config = cfg;
        return {};
    }
    Status put_service(const kxlb_vip_key& key, const kxlb_service& svc) override {
        if (auto s = check("put_service"); !s) return s;
        services[key] = svc;
        return {};
    }
    Status delete_service(const kxlb_vip_key& key) override {
        if (auto s = check("delete_service"); !s) return s;
        services.erase(key);
        return {};
    }
    Status put_vip_addr(const kxlb_vip_addr_key& key, std::uint32_t n) override {
        if (auto s = check("put_vip_addr"); !s) return s;
        vip_addrs[key] = n;
        return {};
    }
    Status delete_vip_addr(const kxlb_vip_addr_key& key) override {
        if (auto s = check("delete_vip_addr"); !s) return s;
        vip_addrs.erase(key);
        return {};
    }
    Status put_backend(std::uint32_t id, const kxlb_backend& be) override {
        if (auto s = check("put_backend"); !s) return s;
        backends[id] = be;
        return {};
    }
    Status clear_backend(std::uint32_t id) override {
        if (auto s = check("clear_backend"); !s) return s;
        backends.erase(id);
        return {};
    }
    Status put_source_range(const kxlb_src_range_key& key) override {
        if (auto s = check("put_source_range"); !s) return s;
        source_ranges.insert(key);
        return {};
    }
    Status delete_source_range(const kxlb_src_range_key& key) override {
        if (auto s = check("delete_source_range"); !s) return s;
        source_ranges.erase(key);
        return {};
    }
    Result<std::vector<kxlb_src_range_key>> read_source_ranges() const override {
        return std::vector<kxlb_src_range_key>(source_ranges.begin(), source_ranges.end());
    }
    Status swap_maglev(std::uint32_t svc_id, std::span<const std::uint32_t> table) override {
        if (auto s = check("swap_maglev"); !s) return s;
        ++swaps;
        if (table.empty()) tables.erase(svc_id);
        else tables[svc_id].assign(table.begin(), table.end());
        return {};
    }
    Status swap_maglev_many(std::span<const TableUpdate> updates) override {
        if (auto s = check("swap_maglev_many"); !s) return s;
        ++batches;
        for (const auto& u : updates) {
            ++swaps;
            if (u.table.empty()) tables.erase(u.svc_id);
            else tables[u.svc_id].assign(u.table.begin(), u.table.end());
        }
        return {};
    }
    Status set_frontend_filter(const kxlb_frontend_filter& f) override {
        if (auto s = check("set_frontend_filter"); !s) return s;
        filter = f;
        return {};
    }
    Status add_tx_port(std::uint32_t ifindex) override {
        if (auto s = check("add_tx_port"); !s) return s;
        tx_ports.push_back(ifindex);
        return {};
    }

    Result<std::vector<ServiceEntry>> read_services() const override {
        if (fail_reads) return Error::from_errno(EIO, "fake read_services");
        return std::vector<ServiceEntry>(services.begin(), services.end());
    }
    Result<std::vector<BackendEntry>> read_backends() const override {
        if (fail_reads) return Error::from_errno(EIO, "fake read_backends");
        return std::vector<BackendEntry>(backends.begin(), backends.end());
    }

    bool fail_reads = false;
    kxlb_config config{};
    std::map<kxlb_vip_key, kxlb_service, VipKeyLess> services;
    std::map<kxlb_vip_addr_key, std::uint32_t, VipAddrLess> vip_addrs;
    std::map<std::uint32_t, kxlb_backend> backends;
    std::map<std::uint32_t, std::vector<std::uint32_t>> tables;
    std::set<kxlb_src_range_key, SrcRangeLess> source_ranges;
    std::vector<std::uint32_t> tx_ports;
    kxlb_frontend_filter filter{};
    int swaps = 0;
    int batches = 0;  // swap_maglev_many calls
    int writes = 0;   // every write operation attempted

private:
    Status check(const std::string& op) {
        ++writes;
        if (op == fail_op_ && fail_countdown_ > 0 && --fail_countdown_ == 0)
            return Error::from_errno(EIO, "fake " + op);
        return {};
    }
    std::string fail_op_;
    int fail_countdown_ = 0;
};

}  // namespace kxlb::test
