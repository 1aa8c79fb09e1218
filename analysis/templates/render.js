// Render every chart of the page as SVG with vega-embed; record each figure's outcome for the tests.
(function () {
  const options = JSON.parse(document.getElementById("embed-options").textContent);
  const figures = Array.from(document.querySelectorAll("figure.chart"));
  const jobs = figures.map(function (figure) {
    const target = figure.querySelector(".vis");
    const spec = JSON.parse(figure.querySelector("script.spec").textContent);
    return vegaEmbed(target, spec, options).then(function () {
      figure.dataset.status = "rendered";
    }).catch(function (error) {
      figure.dataset.status = "error";
      figure.classList.add("failed");
      target.textContent = "This chart failed to render: " + error;
    });
  });
  Promise.all(jobs).then(function () {
    const failed = figures.filter(function (f) { return f.dataset.status !== "rendered"; }).length;
    document.body.dataset.chartsDone = String(figures.length - failed);
    document.body.dataset.chartsFailed = String(failed);
    document.body.dataset.height = String(document.documentElement.scrollHeight);
  });
})();
