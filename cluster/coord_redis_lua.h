/*
 * coord_redis_lua.h - for coord_redis.c only: the Lua scripts that make
 * each cluster decision one atomic round trip (see coord_redis.c).
 */
#ifndef SELOR_COORD_REDIS_LUA_H
#define SELOR_COORD_REDIS_LUA_H

enum cr_script {
    CR_S_CONN,
    CR_S_CLAIM,
    CR_S_CLAIM_ID,
    CR_S_RENEW,
    CR_S_RELEASE,
    CR_S_ANNOUNCE,
    CR_S_SLOT,
    CR_S_SLOT_RENEW,
    CR_S_AUTH_CHECK,
    CR_S_AUTH_FAIL,
    CR_S_RATE,
    CR_S_BATCH,
    CR_NSCRIPTS
};

extern const char *const cr_scripts[CR_NSCRIPTS];

#endif
