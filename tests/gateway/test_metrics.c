/* proto/metrics: text format details Prometheus insists on. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/metrics.h"

Test(proto_metrics, family_samples_and_labels)
{
	proto_metrics_buf_t b;
	char esc[32];
	proto_metrics_buf_init(&b);
	proto_metrics_family(&b, "x_total", "counter", "Things.");
	proto_metrics_u64(&b, "x_total", "a=\"1\"", 5);
	proto_metrics_u64(&b, "x_total", NULL, 6);
	proto_metrics_f64(&b, "y", "", 0.5);
	cr_assert_str_eq(b.p, "# HELP x_total Things.\n# TYPE x_total counter\n"
			      "x_total{a=\"1\"} 5\nx_total 6\ny 0.5\n");
	cr_assert_str_eq(proto_metrics_label(esc, sizeof esc, "a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
	proto_metrics_buf_reset(&b);
	cr_assert_eq(b.len, 0);
	proto_metrics_buf_free(&b);
}

Test(proto_metrics, histogram_is_cumulative_with_inf_equal_to_count)
{
	static const double bounds[] = {0.001, 0.01};
	static const uint64_t units[] = {1000, 10000};
	proto_metrics_hist_t h, acc;
	proto_metrics_buf_t b;
	proto_metrics_hist_init(&h, bounds, units, 2, 1e6);
	proto_metrics_hist_init(&acc, bounds, units, 2, 1e6);
	proto_metrics_hist_observe(&h, 500);
	proto_metrics_hist_observe(&h, 1000);
	proto_metrics_hist_observe(&h, 5000);
	proto_metrics_hist_observe(&h, 50000);
	proto_metrics_hist_add(&acc, &h);
	proto_metrics_buf_init(&b);
	proto_metrics_hist_write(&b, "lat", "r=\"kv\"", &acc);
	cr_assert_str_eq(b.p, "lat_bucket{r=\"kv\",le=\"0.001\"} 2\n"
			      "lat_bucket{r=\"kv\",le=\"0.01\"} 3\n"
			      "lat_bucket{r=\"kv\",le=\"+Inf\"} 4\n"
			      "lat_sum{r=\"kv\"} 0.0565\nlat_count{r=\"kv\"} 4\n");
	proto_metrics_buf_free(&b);
}

Test(proto_metrics, grows_past_initial_capacity)
{
	proto_metrics_buf_t b;
	proto_metrics_buf_init(&b);
	for (int i = 0; i < 2000; i++)
		proto_metrics_u64(&b, "some_metric_name_total", "route=\"kv\",status=\"200\"", (uint64_t)i);
	cr_assert_eq(b.err, 0);
	cr_assert_gt(b.len, 4096 * 8);
	cr_assert_eq(strlen(b.p), b.len);
	proto_metrics_buf_free(&b);
}
