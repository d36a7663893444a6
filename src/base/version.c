const char *synco_version(void) { return SYNCO_VERSION; }
