// One small handler per command: read through Inspector (or Tracer), render with format.hpp.
#include "ctl/commands.hpp"

#include "ctl/format.hpp"
#include "ctl/inspect.hpp"
#include "ctl/pinned_maps.hpp"
#include "ctl/trace.hpp"

namespace kxlb::ctl {

namespace {

template <typename T>
Result<std::string> rendered(const Result<T>& view, OutputMode mode) {
    if (!view) return view.error();
    return render(*view, mode);
}

class Handler {
public:
    Handler(const PinnedMaps& maps, Inspector& in, OutputMode mode) : maps_(maps), in_(in), mode_(mode) {}

    Result<std::string> operator()(const ServiceListCmd&) { return rendered(in_.services(), mode_); }
    Result<std::string> operator()(const ServiceShowCmd& c) { return rendered(in_.service(c.service), mode_); }
    Result<std::string> operator()(const BackendListCmd& c) { return rendered(in_.backends(c.service), mode_); }
    Result<std::string> operator()(const MaglevShowCmd& c) { return rendered(in_.maglev(c.service, c.full), mode_); }
    Result<std::string> operator()(const ConntrackListCmd& c) {
        return rendered(in_.flows(FlowFilter{c.service, c.backend_id, c.limit}), mode_);
    }
    Result<std::string> operator()(const ConntrackFlushCmd& c) { return rendered(in_.flush(c.service), mode_); }
    Result<std::string> operator()(const StatsCmd& c) { return rendered(in_.stats(c.all), mode_); }
    Result<std::string> operator()(const TraceCmd& c) {
        auto ingress = resolve_ingress(c.ifname, maps_);
        if (!ingress) return ingress.error();
        auto tracer = Tracer::create(maps_);
        if (!tracer) return tracer.error();
        return rendered(tracer->run(c, *ingress), mode_);
    }
    Result<std::string> operator()(const VersionCmd&) { return render_version(mode_); }

private:
    const PinnedMaps& maps_;
    Inspector& in_;
    OutputMode mode_;
};

}  // namespace

Result<std::string> execute(const Invocation& inv) {
    if (std::holds_alternative<VersionCmd>(inv.command)) return render_version(inv.global.mode);
    auto maps = PinnedMaps::open(inv.global.pin_path);
    if (!maps) return maps.error();
    auto in = Inspector::bind(*maps);
    if (!in) return in.error();
    return std::visit(Handler(*maps, *in, inv.global.mode), inv.command);
}

}  // namespace kxlb::ctl
