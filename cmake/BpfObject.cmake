# bpf_object(): compile one bpf/*.bpf.c into a BPF object and a bpftool skeleton header, exposed as an
# INTERFACE target (kxlb_bpf_<name>) that C++ targets link against to embed the object.
#
#   bpf_object(<name> <source.bpf.c>)
#     -> target kxlb_bpf_<name>; include "<name>.skel.h" to get struct <name>_bpf and its functions.
find_program(KXLB_CLANG NAMES clang clang-14 REQUIRED)
find_program(KXLB_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

# BPF programs use UAPI headers only (never glibc): the arch include dir provides <asm/types.h>.
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-multiarch OUTPUT_VARIABLE KXLB_MULTIARCH
                OUTPUT_STRIP_TRAILING_WHITESPACE)
set(KXLB_BPF_CFLAGS -target bpf -O2 -g -Wall -Wextra -Werror -Wno-unused-parameter
    -mcpu=v3 -D__TARGET_ARCH_x86
    -I${PROJECT_SOURCE_DIR}/include -I${PROJECT_SOURCE_DIR}/bpf
    -idirafter /usr/include/${KXLB_MULTIARCH})

function(bpf_object name source)
  set(src ${CMAKE_CURRENT_SOURCE_DIR}/${source})
  set(outdir ${CMAKE_BINARY_DIR}/bpf)
  set(raw ${outdir}/${name}.tmp.o)
  set(obj ${outdir}/${name}.bpf.o)
  set(skel ${outdir}/${name}.skel.h)
  file(GLOB_RECURSE bpf_headers CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/bpf/lib/*.h
       ${PROJECT_SOURCE_DIR}/include/kxlb/*.h)
  add_custom_command(
    OUTPUT ${skel} ${obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${outdir}
    COMMAND ${KXLB_CLANG} ${KXLB_BPF_CFLAGS} -c ${src} -o ${raw}
    # "gen object" links and strips DWARF while keeping BTF, so the embedded object stays small.
    COMMAND ${KXLB_BPFTOOL} gen object ${obj} ${raw}
    COMMAND ${KXLB_BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}
    DEPENDS ${src} ${bpf_headers}
    COMMENT "BPF ${source} -> ${name}.skel.h"
    VERBATIM)
  add_custom_target(kxlb_bpf_${name}_gen DEPENDS ${skel})
  add_library(kxlb_bpf_${name} INTERFACE)
  add_dependencies(kxlb_bpf_${name} kxlb_bpf_${name}_gen)
  target_include_directories(kxlb_bpf_${name} INTERFACE ${outdir})
  target_link_libraries(kxlb_bpf_${name} INTERFACE PkgConfig::LIBBPF)
endfunction()
