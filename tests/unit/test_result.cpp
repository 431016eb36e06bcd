// Unit tests for the error model (Result/Error) and UniqueFd.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <string>

#include "lib/result.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb {
namespace {

Result<int> parse_positive(int v) {
    if (v <= 0) return Error::invalid("not positive: " + std::to_string(v));
    return v;
}

TEST(Result, CarriesValueOrError) {
    auto ok = parse_positive(7);
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(*ok, 7);
    auto bad = parse_positive(-1);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, EINVAL);
    EXPECT_EQ(bad.error().message, "not positive: -1");
}

TEST(Result, FromErrnoAcceptsNegativeLibbpfStyleCodes) {
    Error e = Error::from_errno(-ENOENT, "lookup svc");
    EXPECT_EQ(e.code, ENOENT);
    EXPECT_EQ(e.message, "lookup svc: No such file or directory");
    EXPECT_EQ(Error::from_errno(EPERM, "attach").code, EPERM);
}

TEST(Result, VoidStatus) {
    Status ok;
    EXPECT_TRUE(ok.ok());
    Status bad = Error::from_errno(EBUSY, "attach XDP");
    EXPECT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code, EBUSY);
}

TEST(Result, MoveOnlyValues) {
    Result<UniqueFd> r = UniqueFd(::open("/dev/null", O_RDONLY));
    ASSERT_TRUE(r.ok());
    UniqueFd fd = std::move(r).value();
    EXPECT_TRUE(fd.valid());
}

TEST(UniqueFd, ClosesOnDestructionAndMove) {
    int raw = ::open("/dev/null", O_RDONLY);
    ASSERT_GE(raw, 0);
    {
        UniqueFd a(raw);
        UniqueFd b(std::move(a));
        EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from state is specified
        EXPECT_EQ(b.get(), raw);
    }
    EXPECT_EQ(::fcntl(raw, F_GETFD), -1);
    EXPECT_EQ(errno, EBADF);
}

TEST(UniqueFd, ReleaseGivesUpOwnership) {
    UniqueFd a(::open("/dev/null", O_RDONLY));
    int raw = a.release();
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(::fcntl(raw, F_GETFD), 0);
    ::close(raw);
}

}  // namespace
}  // namespace kxlb
