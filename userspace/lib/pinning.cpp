// Pinned maps and links: reuse with layout checks, atomic program replacement, removal.
#include "lib/pinning.hpp"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <filesystem>
#include <memory>

#include "lib/unique_fd.hpp"

namespace kxlb {

namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;

struct BtfDeleter {
    void operator()(btf* b) const { btf__free(b); }
};
using BtfPtr = std::unique_ptr<btf, BtfDeleter>;

// A canonical text of a BTF type: two types with equal text have the same memory layout and
// field names. Typedefs and qualifiers are looked through; depth is bounded against cycles.
std::string describe_type(const btf* b, std::uint32_t id, int depth = 0) {
    if (depth > 16) return "...";
    const btf_type* t = btf__type_by_id(b, id);
    if (!t) return "?" + std::to_string(id);
    switch (btf_kind(t)) {
        case BTF_KIND_TYPEDEF:
        case BTF_KIND_VOLATILE:
        case BTF_KIND_CONST:
        case BTF_KIND_RESTRICT:
        case BTF_KIND_TYPE_TAG: return describe_type(b, t->type, depth + 1);
        case BTF_KIND_INT: return "int" + std::to_string(t->size * 8);
        case BTF_KIND_ENUM:
        case BTF_KIND_ENUM64: return "enum" + std::to_string(t->size * 8);
        case BTF_KIND_PTR: return "ptr";
        case BTF_KIND_ARRAY: {
            const struct btf_array* a = btf_array(t);
            return describe_type(b, a->type, depth + 1) + "[" + std::to_string(a->nelems) + "]";
        }
        case BTF_KIND_STRUCT:
        case BTF_KIND_UNION: {
            std::string out = btf_is_union(t) ? "union " : "struct ";
            out += btf__name_by_offset(b, t->name_off);
            out += "{";
            const struct btf_member* m = btf_members(t);
            for (std::uint16_t i = 0; i < btf_vlen(t); ++i, ++m) {
                if (i) out += ",";
                out += btf__name_by_offset(b, m->name_off);
                out += ":" + describe_type(b, m->type, depth + 1);
                out += "@" + std::to_string(btf_member_bit_offset(t, i));
                if (auto bits = btf_member_bitfield_size(t, i)) out += ":" + std::to_string(bits);
            }
            return out + "}";
        }
        default: return "kind" + std::to_string(btf_kind(t));
    }
}

struct MapLayout {
    std::uint32_t type = 0, key_size = 0, value_size = 0, max_entries = 0, flags = 0;
    std::string key, value;  // BTF descriptions, empty when the map has no BTF for it
    std::string str() const {
        return "type " + std::to_string(type) + " key=" + (key.empty() ? std::to_string(key_size) + "B" : key) +
               " value=" + (value.empty() ? std::to_string(value_size) + "B" : value) +
               " max_entries=" + std::to_string(max_entries) + " flags=" + std::to_string(flags);
    }
};

Result<MapLayout> pinned_layout(int fd, const std::string& path) {
    bpf_map_info info{};
    std::uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return Error::from_errno(errno, "inspect pinned map " + path);
    MapLayout l{info.type, info.key_size, info.value_size, info.max_entries, info.map_flags, {}, {}};
    // The kernel marks devmaps read-only for programs on its own (and refuses the flag at creation),
    // so it is not part of the definition.
    if (info.type == BPF_MAP_TYPE_DEVMAP || info.type == BPF_MAP_TYPE_DEVMAP_HASH) l.flags &= ~BPF_F_RDONLY_PROG;
    if (info.btf_id != 0) {
        BtfPtr b(btf__load_from_kernel_by_id(info.btf_id));
        if (!b) return Error::from_errno(errno, "load BTF of pinned map " + path);
        if (info.btf_key_type_id) l.key = describe_type(b.get(), info.btf_key_type_id);
        if (info.btf_value_type_id) l.value = describe_type(b.get(), info.btf_value_type_id);
    }
    return l;
}

MapLayout object_layout(const bpf_object* obj, const bpf_map* map) {
    MapLayout l{static_cast<std::uint32_t>(bpf_map__type(map)),
                bpf_map__key_size(map),
                bpf_map__value_size(map),
                bpf_map__max_entries(map),
                bpf_map__map_flags(map),
                {},
                {}};
    if (const btf* b = bpf_object__btf(obj)) {
        if (auto k = bpf_map__btf_key_type_id(map)) l.key = describe_type(b, k);
        if (auto v = bpf_map__btf_value_type_id(map)) l.value = describe_type(b, v);
    }
    return l;
}

bool compatible(const MapLayout& pinned, const MapLayout& ours) {
    if (pinned.type != ours.type || pinned.key_size != ours.key_size || pinned.value_size != ours.value_size ||
        pinned.max_entries != ours.max_entries || pinned.flags != ours.flags)
        return false;
    // Compare BTF only where both sides have it (maps of maps carry none for the value).
    if (!pinned.key.empty() && !ours.key.empty() && pinned.key != ours.key) return false;
    if (!pinned.value.empty() && !ours.value.empty() && pinned.value != ours.value) return false;
    return true;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

}  // namespace

Status prepare_pin_dirs(const PinLayout& layout) {
    if (layout.root.empty() || layout.root.front() != '/')
        return Error::invalid("pin path '" + layout.root + "' must be absolute");
    const std::string parent = std::filesystem::path(layout.root).parent_path().string();
    struct statfs fs {};
    if (::statfs(parent.c_str(), &fs) != 0) return Error::from_errno(errno, "statfs " + parent);
    if (static_cast<long>(fs.f_type) != kBpfFsMagic)
        return Error::invalid("pin path " + layout.root + " is not on a bpffs mount (mount -t bpf bpf " + parent + ")");
    for (const auto& dir : {layout.root, layout.maps_dir(), layout.links_dir()})
        if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Error::from_errno(errno, "mkdir " + dir);
    return {};
}

Result<std::string> describe_pinned_map(const std::string& path) {
    UniqueFd fd(bpf_obj_get(path.c_str()));
    if (!fd.valid()) return Error::from_errno(errno, "open pinned map " + path);
    auto l = pinned_layout(fd.get(), path);
    if (!l) return l.error();
    return l->str();
}

Status use_pinned_maps(bpf_object* obj, const PinLayout& layout) {
    bpf_map* map;
    bpf_object__for_each_map (map, obj) {
        if (bpf_map__is_internal(map)) continue;  // .rodata/.bss belong to one program load
        const std::string path = layout.map(bpf_map__name(map));
        if (exists(path)) {
            UniqueFd fd(bpf_obj_get(path.c_str()));
            if (!fd.valid()) return Error::from_errno(errno, "open pinned map " + path);
            auto pinned = pinned_layout(fd.get(), path);
            if (!pinned) return pinned.error();
            const MapLayout ours = object_layout(obj, map);
            if (!compatible(*pinned, ours))
                return Error::invalid(
                    "pinned map " + path + " has another layout than this agent uses:\n  pinned: " + pinned->str() +
                    "\n  wanted: " + ours.str() +
                    "\n  refusing to reuse it (its entries cannot be migrated safely). Start the agent version "
                    "or settings that created it, or run `kxlb-agent --uninstall` (drops established flows) first.");
            // Checked above, more strictly than libbpf's own reuse check (which trips over devmaps).
            if (int err = bpf_map__reuse_fd(map, fd.get()); err != 0)
                return Error::from_errno(err, "reuse pinned map " + path);
            continue;
        }
        if (int err = bpf_map__set_pin_path(map, path.c_str()); err != 0)
            return Error::from_errno(err, "set pin path " + path);
    }
    return {};
}

Result<Link> open_pinned_link(const std::string& path) {
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0) return Error::from_errno(errno, "open pinned link " + path);
    return Link(UniqueFd(fd));
}

Status update_link(const Link& link, const bpf_program* prog) {
    if (bpf_link_update(link.fd(), bpf_program__fd(prog), nullptr) != 0)
        return Error::from_errno(errno, std::string("replace program of link with ") + bpf_program__name(prog));
    return {};
}

namespace {

// Opens the link pinned at path if it is still attached where `matches` says; otherwise unpins it.
template <typename Match>
std::optional<Link> reusable_link(const std::string& path, Match&& matches) {
    if (!exists(path)) return std::nullopt;
    auto link = open_pinned_link(path);
    if (link) {
        bpf_link_info info{};
        std::uint32_t len = sizeof(info);
        if (bpf_obj_get_info_by_fd(link->fd(), &info, &len) == 0 && matches(info)) return std::move(link).value();
    }
    ::unlink(path.c_str());  // stale: its interface/cgroup is gone or it is attached differently
    return std::nullopt;
}

Result<Link> pin_new(Result<Link> link, const std::string& path) {
    if (!link) return link.error();
    if (auto st = link->pin(path); !st) return st.error();  // the link detaches when we return
    return link;
}

}  // namespace

Result<Link> attach_xdp_pinned(const bpf_program* prog, int ifindex, XdpMode mode, const std::string& path) {
    auto state = query_xdp(ifindex);
    const bool same_mode = state && (mode == XdpMode::Native ? state->native : state->generic);
    auto existing = reusable_link(path, [&](const bpf_link_info& info) {
        return info.type == BPF_LINK_TYPE_XDP && static_cast<int>(info.xdp.ifindex) == ifindex && same_mode;
    });
    if (existing) {
        if (auto st = update_link(*existing, prog); !st) return st.error();
        return std::move(*existing);
    }
    return pin_new(attach_xdp(prog, ifindex, mode), path);
}

Result<Link> attach_cgroup_pinned(const bpf_program* prog, int cgroup_fd, const std::string& path) {
    struct stat st {};
    if (::fstat(cgroup_fd, &st) != 0) return Error::from_errno(errno, "stat cgroup");
    const auto type = bpf_program__expected_attach_type(prog);
    auto existing = reusable_link(path, [&](const bpf_link_info& info) {
        return info.type == BPF_LINK_TYPE_CGROUP && info.cgroup.cgroup_id == st.st_ino &&
               info.cgroup.attach_type == static_cast<std::uint32_t>(type);
    });
    if (existing) {
        if (auto s = update_link(*existing, prog); !s) return s.error();
        return std::move(*existing);
    }
    int fd = bpf_link_create(bpf_program__fd(prog), cgroup_fd, type, nullptr);
    if (fd < 0) return Error::from_errno(errno, std::string("attach ") + bpf_program__name(prog) + " to cgroup");
    return pin_new(Link(UniqueFd(fd)), path);
}

Result<int> remove_pinned(const PinLayout& layout) {
    namespace fs = std::filesystem;
    int removed = 0;
    std::error_code ec;
    for (const auto& dir : {layout.links_dir(), layout.maps_dir()}) {
        if (!fs::exists(dir, ec)) continue;
        for (const auto& entry : fs::directory_iterator(dir, ec)) {
            if (::unlink(entry.path().c_str()) != 0) return Error::from_errno(errno, "unpin " + entry.path().string());
            ++removed;
        }
        if (ec) return Error{ec.value(), "list " + dir + ": " + ec.message()};
        if (::rmdir(dir.c_str()) != 0) return Error::from_errno(errno, "rmdir " + dir);
    }
    if (fs::exists(layout.root, ec) && ::rmdir(layout.root.c_str()) != 0)
        return Error::from_errno(errno, "rmdir " + layout.root);
    return removed;
}

}  // namespace kxlb
