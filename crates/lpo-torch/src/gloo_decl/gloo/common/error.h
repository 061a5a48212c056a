// See ../README.md: a declaration-only stand-in for gloo's header of this name.
#pragma once
