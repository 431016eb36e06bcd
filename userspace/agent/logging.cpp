// Logging setup: a custom spdlog flag (%*) that writes the message JSON-escaped, so the JSON
// format is valid whatever a message contains.
#include "agent/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>

namespace kxlb::agent {

std::string json_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 8);
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof(buf), "\\u%04x", c);
                    out += buf;
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    return out;
}

namespace {

class JsonMessageFlag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
        const std::string esc = json_escape(std::string_view(msg.payload.data(), msg.payload.size()));
        dest.append(esc.data(), esc.data() + esc.size());
    }
    std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessageFlag>(); }
};

}  // namespace

Status configure_logging(const std::string& level, const std::string& format) {
    const auto lvl = spdlog::level::from_str(level);
    if (lvl == spdlog::level::off && level != "off") return Error::invalid("unknown log level '" + level + "'");
    spdlog::set_level(lvl);
    if (format == "json") {
        auto f = std::make_unique<spdlog::pattern_formatter>();
        f->add_flag<JsonMessageFlag>('*').set_pattern(
            R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","logger":"kxlb-agent","msg":"%*"})");
        spdlog::set_formatter(std::move(f));
    } else if (format == "text") {
        spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
    } else {
        return Error::invalid("unknown log format '" + format + "' (text or json)");
    }
    return {};
}

}  // namespace kxlb::agent
