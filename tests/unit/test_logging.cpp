// Unit tests for the agent's logging setup: JSON escaping and the JSON line format.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "agent/logging.hpp"

namespace kxlb::agent {
namespace {

TEST(Logging, JsonEscapeHandlesQuotesBackslashesAndControlCharacters) {
    EXPECT_EQ(json_escape("plain"), "plain");
    EXPECT_EQ(json_escape("a\"b\\c"), "a\\\"b\\\\c");
    EXPECT_EQ(json_escape("line1\nline2\t\r"), "line1\\nline2\\t\\r");
    EXPECT_EQ(json_escape(std::string("\x01\x1f", 2)), "\\u0001\\u001f");
}

TEST(Logging, JsonFormatWritesOneParsableObjectPerLine) {
    std::ostringstream out;
    auto previous = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    spdlog::set_default_logger(logger);
    ASSERT_TRUE(configure_logging("info", "json"));
    spdlog::info("backend \"be1\" is {}\nnext line", "down");
    spdlog::debug("not shown at info");
    spdlog::set_default_logger(previous);
    ASSERT_TRUE(configure_logging("info", "text"));
    std::istringstream lines(out.str());
    std::string line;
    ASSERT_TRUE(std::getline(lines, line));
    auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["level"], "info");
    EXPECT_EQ(j["msg"], "backend \"be1\" is down\nnext line");
    EXPECT_EQ(j["logger"], "kxlb-agent");
    EXPECT_FALSE(std::getline(lines, line)) << "debug must be filtered";
}

TEST(Logging, UnknownLevelOrFormatIsAnError) {
    auto bad = configure_logging("loud", "text");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message, "unknown log level 'loud'");
    auto fmt = configure_logging("info", "xml");
    ASSERT_FALSE(fmt);
    EXPECT_EQ(fmt.error().message, "unknown log format 'xml' (text or json)");
    ASSERT_TRUE(configure_logging("info", "text"));
}

}  // namespace
}  // namespace kxlb::agent
