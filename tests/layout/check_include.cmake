# check_include.cmake - one layout probe (tests/layout/CMakeLists.txt):
# compile a one-line C file, #include "<header>", with exactly the include
# path of a target of this build, and check the outcome.
#
#   cmake -DCC=... -DINCLUDES=<file, one directory a line> -DHEADER=<path
#         from the source root> -DSOURCE_DIR=... -DWORK=<scratch dir>
#         -DEXPECT=reachable|unreachable -P check_include.cmake
#
# unreachable passes only when the compiler fails because that header is
# not found (any other error fails the probe), and only for a header that
# exists in the tree, so a renamed header cannot make the probe pass
# vacuously. reachable passes when the file compiles.
foreach(v CC INCLUDES HEADER SOURCE_DIR WORK EXPECT)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_include.cmake: -D${v}= is missing")
  endif()
endforeach()
if(NOT EXISTS "${SOURCE_DIR}/${HEADER}")
  message(FATAL_ERROR "probe names ${HEADER}, which is not in the tree")
endif()
get_filename_component(name "${HEADER}" NAME)

file(STRINGS "${INCLUDES}" dirs)
set(flags)
foreach(d IN LISTS dirs)
  if(d)
    list(APPEND flags "-I${d}")
  endif()
endforeach()
file(MAKE_DIRECTORY "${WORK}")
file(WRITE "${WORK}/probe.c" "#include \"${name}\"\n")
execute_process(
  COMMAND "${CC}" -std=c11 -D_POSIX_C_SOURCE=200809L -fsyntax-only ${flags}
          "${WORK}/probe.c"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REPLACE "." "\\." name_re "${name}")
if(EXPECT STREQUAL "reachable")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "#include \"${name}\" should compile here:\n${err}")
  endif()
  message(STATUS "ok: ${name} reachable")
elseif(EXPECT STREQUAL "unreachable")
  if(rc EQUAL 0)
    string(JOIN " " shown ${flags})
    message(FATAL_ERROR "#include \"${name}\" compiled; it must not be on "
                        "this include path:\n  ${shown}")
  endif()
  if(NOT err MATCHES "${name_re}'?:? (No such file or directory|file not found)")
    message(FATAL_ERROR "#include \"${name}\" failed for another reason "
                        "than the header not being found:\n${err}")
  endif()
  message(STATUS "ok: ${name} unreachable")
else()
  message(FATAL_ERROR "EXPECT must be reachable or unreachable")
endif()
