/*
 * test_cuda_probe.c - what the backend choice says about the GPU (issue 15,
 * "the first hour"): on a machine without a GPU, --backend auto takes the
 * CPU and says "no GPU, using the CPU", never the CUDA runtime's error 35
 * ("CUDA driver version is insufficient for CUDA runtime version"), which
 * reads like an outdated driver; --backend cuda fails with DEMIX_EDEVICE
 * and a sentence that starts "no GPU". With a device, auto takes CUDA and
 * says nothing.
 *
 * Unlike test_cuda_engine.c, the no-device case is the point here: it
 * runs where CUDA is built but no device opens (a build machine), and
 * the device case on the GPU machine.
 */
#include "testutil.h"

#include <string.h>

#include "cuda_backend.h"
#include "engine.h"

static demix_model *tiny_model(void)
{
    demix_model *m = NULL;
    assert_int_equal(demix_model_create_random(24, 40, 0, 44100, 7, &m),
                     DEMIX_OK);
    return m;
}

static void test_backend_choice_says_why(void **state)
{
    (void)state;
    demix_model *m = tiny_model();
    demix_engine_options o;
    demix_engine_options_init(&o);
    o.max_slots = 2;
    o.backend = DEMIX_BACKEND_AUTO;
    char err[512] = "";
    demix_engine *e = NULL;
    assert_int_equal(demix_engine_create(m, &o, &e, err, sizeof err), DEMIX_OK);
    print_message("auto: backend %s, \"%s\"\n", demix_engine_backend_name(e),
                  err);
    if (demix__cuda_device_count() > 0) {
        assert_string_equal(demix_engine_backend_name(e), "cuda");
        assert_string_equal(err, "");
    } else {
        assert_string_equal(demix_engine_backend_name(e), "cpu");
        assert_non_null(strstr(err, "no GPU, using the CPU"));
        assert_null(strstr(err, "insufficient"));

        demix_engine *c = NULL;
        char why[512] = "";
        o.backend = DEMIX_BACKEND_CUDA;
        assert_int_equal(demix_engine_create(m, &o, &c, why, sizeof why),
                         DEMIX_EDEVICE);
        print_message("cuda: \"%s\"\n", why);
        assert_non_null(strstr(why, "no GPU"));
        assert_null(c);
    }
    demix_engine_destroy(e);
    demix_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_choice_says_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
