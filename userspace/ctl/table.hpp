// Plain-text layout for kxlbctl's human output: aligned tables and "key: value" blocks. Columns are
// separated by two spaces; numbers are right-aligned; lines carry no trailing blanks.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace kxlb::ctl {

class Table {
public:
    enum class Align { Left, Right };
    struct Column {
        std::string header;
        Align align = Align::Left;
    };

    explicit Table(std::vector<Column> columns) : columns_(std::move(columns)) {}
    // Precondition: cells.size() == number of columns.
    void add(std::vector<std::string> cells);
    std::size_t rows() const { return rows_.size(); }
    // Header line, then one line per row, each ending in '\n'.
    std::string str() const;

private:
    std::vector<Column> columns_;
    std::vector<std::vector<std::string>> rows_;
};

// "key:" padded to the longest key + one space, then the value; one line each.
class KeyValues {
public:
    void add(std::string key, std::string value) { lines_.emplace_back(std::move(key), std::move(value)); }
    std::string str(const std::string& indent = "") const;

private:
    std::vector<std::pair<std::string, std::string>> lines_;
};

}  // namespace kxlb::ctl
