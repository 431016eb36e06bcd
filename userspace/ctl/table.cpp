// Aligned text tables and key/value blocks.
#include "ctl/table.hpp"

#include <algorithm>
#include <cassert>

namespace kxlb::ctl {

namespace {

std::string rstrip(std::string s) {
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

}  // namespace

void Table::add(std::vector<std::string> cells) {
    assert(cells.size() == columns_.size());
    cells.resize(columns_.size());
    rows_.push_back(std::move(cells));
}

std::string Table::str() const {
    std::vector<std::size_t> width(columns_.size());
    for (std::size_t c = 0; c < columns_.size(); ++c) {
        width[c] = columns_[c].header.size();
        for (const auto& r : rows_) width[c] = std::max(width[c], r[c].size());
    }
    auto line = [&](auto&& cell) {
        std::string out;
        for (std::size_t c = 0; c < columns_.size(); ++c) {
            const std::string& text = cell(c);
            const std::string pad(width[c] - text.size(), ' ');
            if (c) out += "  ";
            out += columns_[c].align == Align::Right ? pad + text : text + pad;
        }
        return rstrip(std::move(out)) + "\n";
    };
    std::string out = line([&](std::size_t c) -> const std::string& { return columns_[c].header; });
    for (const auto& r : rows_) out += line([&](std::size_t c) -> const std::string& { return r[c]; });
    return out;
}

std::string KeyValues::str(const std::string& indent) const {
    std::size_t width = 0;
    for (const auto& [k, v] : lines_) width = std::max(width, k.size() + 1);
    std::string out;
    for (const auto& [k, v] : lines_) {
        std::string line = indent;
        line += k;
        line += ':';
        line.resize(indent.size() + width, ' ');
        line += ' ';
        line += v;
        out += rstrip(std::move(line));
        out += '\n';
    }
    return out;
}

}  // namespace kxlb::ctl
