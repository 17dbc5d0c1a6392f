// The unit tests test the base types alone: no plugin path reaches them, so that a unit test
// that tries to load a plugin does not compile. This keeps the build from giving them one.
#if defined(OPTREG_TEST_PLUGIN_DIR) || defined(OPTREG_TEST_SGD_PLUGIN) || defined(OPTREG_TEST_ADAM_PLUGIN) || \
    defined(OPTREG_TEST_SCHEDULERS_PLUGIN)
#error "the unit tests load no plugin: build them with optreg_add_gtest(... NO_PLUGINS)"
#endif
