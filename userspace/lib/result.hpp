// The one error model at the libbpf/syscall boundary: an errno plus a message, carried in an
// expected-style Result<T>. (std::expected is C++23; this is the subset kxlb needs.)
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace kxlb {

struct Error {
    int code = 0;         // positive errno value (EINVAL, ENOENT, ...); 0 if not errno-based
    std::string message;  // what was being done, with the errno text appended

    // Builds "what: strerror(code)". Accepts negative (libbpf style) or positive errno values.
    static Error from_errno(int code, std::string_view what);
    // An error that did not come from errno (validation, protocol).
    static Error invalid(std::string_view what) { return Error{EINVAL, std::string(what)}; }
};

inline Error Error::from_errno(int code, std::string_view what) {
    if (code < 0) code = -code;
    std::string msg(what);
    msg += ": ";
    msg += std::strerror(code);
    return Error{code, std::move(msg)};
}

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT(google-explicit-constructor)
    Result(Error err) : v_(std::in_place_index<1>, std::move(err)) {}  // NOLINT(google-explicit-constructor)

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    // Precondition: ok().
    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    // By value: a reference into a temporary Result would dangle (`for (x : f().value())`).
    T value() && { return std::get<0>(std::move(v_)); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T operator*() && { return std::move(*this).value(); }

    // Precondition: !ok().
    const Error& error() const { return std::get<1>(v_); }

private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error err) : err_(std::move(err)) {}  // NOLINT(google-explicit-constructor)

    bool ok() const { return !err_.has_value(); }
    explicit operator bool() const { return ok(); }
    const Error& error() const { return *err_; }

private:
    std::optional<Error> err_;
};

using Status = Result<void>;

}  // namespace kxlb
