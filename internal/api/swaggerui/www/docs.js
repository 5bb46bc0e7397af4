// DubeBox's /docs page: Swagger UI over the service's own /openapi.json,
// every file served by the binary itself (no CDN), requests sent to the
// page's own origin.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  tryItOutEnabled: false,
  persistAuthorization: false,
});
