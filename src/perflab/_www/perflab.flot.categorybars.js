/* perflab: side-by-side bars on a category axis, for asv's graph page.
 *
 * Part of perflab (not a third-party copy). `python -m perflab dashboard` loads it right after
 * flot-orderbars.
 *
 * asv 0.6.6 draws a graph whose x-axis is a string parameter (`#bench?x-axis=variant`) as bars
 * on flot's "categories" axis and gives each series `bars: {order: n}` for flot-orderbars 1.0.0
 * to place them side by side. orderBars measures the axis from the series' raw data
 * (`series.data[i][0]`); on a category axis those are the labels ("before", "after"), so the
 * measure, and with it every bar's shifted x, is NaN and flot draws nothing: an empty plot, with
 * no error, whenever two or more series are shown.
 *
 * This plugin takes the ordered bar series of a category axis away from orderBars (it hides
 * their `order` before orderBars sees it) and places them itself, after the categories plugin
 * has turned the labels into numbers 0, 1, 2...: series k of n is shifted by
 * (k - (n - 1) / 2) bar widths, so the n bars of one category sit side by side, centred on it.
 * Every other graph (numeric or commit x-axis, unordered or single bars) is left to orderBars.
 */
(function ($) {
    function onCategoryAxis(series) {
        return series.bars && series.bars.show && series.bars.order != null &&
            series.xaxis && series.xaxis.options.mode === "categories" &&
            !series.bars.horizontal;
    }

    function init(plot) {
        var orders = null;

        plot.hooks.processRawData.push(function (plot, series) {
            // Runs for every series before any processDatapoints hook (orderBars' included).
            if (!onCategoryAxis(series)) {
                return;
            }
            series.bars.perflabOrder = series.bars.order;
            series.bars.order = null;
            orders = null;
        });

        plot.hooks.processDatapoints.push(function (plot, series, datapoints) {
            if (series.bars.perflabOrder == null) {
                return;
            }
            if (orders === null) {
                orders = [];
                $.each(plot.getData(), function (i, s) {
                    var o = s.bars.perflabOrder;
                    if (o != null && orders.indexOf(o) < 0) {
                        orders.push(o);
                    }
                });
                orders.sort(function (a, b) { return a < b ? -1 : a > b ? 1 : 0; });
            }
            var n = orders.length;
            if (n < 2) {
                return;
            }
            var dx = (orders.indexOf(series.bars.perflabOrder) - (n - 1) / 2) * series.bars.barWidth;
            var points = datapoints.points, ps = datapoints.pointsize;
            for (var i = 0; i < points.length; i += ps) {
                if (points[i] != null) {
                    points[i] += dx;
                }
            }
        });
    }

    $.plot.plugins.push({
        init: init,
        options: {},
        name: "perflab.categorybars",
        version: "1.0"
    });
})(jQuery);
