#include "errors.h"

const char *hy_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define HY_ERR_STR_(name, value, msg)                                                    \
    case value:                                                                          \
        return msg;
        HY_ERRNO_MAP(HY_ERR_STR_)
        HY_APP_STATUS_MAP(HY_ERR_STR_)
#undef HY_ERR_STR_
    default:
        return "unknown error";
    }
}

const char *hy_err_name(int err)
{
    switch (err) {
    case 0:
        return "0";
#define HY_ERR_NAME_(name, value, msg)                                                   \
    case value:                                                                          \
        return "HY_" #name;
        HY_ERRNO_MAP(HY_ERR_NAME_)
        HY_APP_STATUS_MAP(HY_ERR_NAME_)
#undef HY_ERR_NAME_
    default:
        return "HY_E?";
    }
}
