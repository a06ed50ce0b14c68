// Swagger UI for camserver's API, from the vendored swagger-ui-dist (no CDN, no inline
// script: the page runs under the same Content-Security-Policy as the dashboard).
window.addEventListener("load", () => {
  window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    presets: [window.SwaggerUIBundle.presets.apis],
  });
});
