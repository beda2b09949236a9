// pdctl: one executable, one role per process (see README.md).
#include <iostream>
#include <string>
#include <vector>

#include "roles/cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  pdctl::roles::Cli cli;
  if (auto rc = cli.parse(args, std::cout, std::cerr)) return *rc;
  return cli.run();
}
