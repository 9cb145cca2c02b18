/* The library's version, as built (version.h is generated from the project's
 * version by the build). */
#include "version.h"

unsigned hy_version(void)
{
    return HY_VERSION_NUMBER;
}

const char *hy_version_string(void)
{
    return HY_VERSION_STRING;
}
