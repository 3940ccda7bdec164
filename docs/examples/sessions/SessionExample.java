// A Java test suite's set-up and tear-down against one shared replayproxy: open a session
// of its own through the control API (its own proxy port: no proxy credentials needed),
// call the API through it, verify what was sent, and close the session, which writes
// its cassette.
//
//   java SessionExample CASSETTE URL
//
// REPLAYPROXY_CONTROL_URL and REPLAYPROXY_CONTROL_TOKEN come from `replayproxy serve` (or
// ProxyRun.environment()); JAVA_TOOL_OPTIONS from the same place makes Java trust the CA.
import java.net.InetSocketAddress;
import java.net.ProxySelector;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class SessionExample {
    static final String CONTROL = System.getenv("REPLAYPROXY_CONTROL_URL");
    static final String TOKEN = System.getenv("REPLAYPROXY_CONTROL_TOKEN");
    // the control API is called directly, never through the proxy
    static final HttpClient DIRECT = HttpClient.newBuilder()
            .proxy(HttpClient.Builder.NO_PROXY).build();

    static String control(String method, String path, String json) throws Exception {
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(CONTROL + path))
                .header("Authorization", "Bearer " + TOKEN)
                .header("Content-Type", "application/json");
        request.method(method, json == null ? HttpRequest.BodyPublishers.noBody()
                                            : HttpRequest.BodyPublishers.ofString(json));
        HttpResponse<String> response = DIRECT.send(request.build(),
                                                     HttpResponse.BodyHandlers.ofString());
        if (response.statusCode() >= 300) {
            throw new IllegalStateException(method + " " + path + ": " + response.body());
        }
        return response.body();
    }

    public static void main(String[] args) throws Exception {
        String cassette = args[0];
        // @BeforeAll: {"name": ..., "proxy_url": "http://127.0.0.1:PORT", ...}
        String opened = control("POST", "/sessions", "{\"cassette\": \"" + cassette + "\"}");
        Matcher m = Pattern.compile("\"proxy_url\": \"http://([^:\"]+):(\\d+)\"").matcher(opened);
        if (!m.find()) {
            throw new IllegalStateException("no proxy_url in " + opened);
        }
        HttpClient client = HttpClient.newBuilder()
                .proxy(ProxySelector.of(new InetSocketAddress(m.group(1),
                                                              Integer.parseInt(m.group(2)))))
                .build();
        // the tests
        HttpResponse<String> response = client.send(
                HttpRequest.newBuilder(URI.create(args[1])).build(),
                HttpResponse.BodyHandlers.ofString());
        System.out.print(response.body());
        // verification, as WireMock's verify would: exactly one GET was sent to that path
        String path = URI.create(args[1]).getPath();
        String sent = control("GET", "/sessions/" + cassette + "/requests?method=GET&url=*"
                              + path, null);
        int calls = sent.split("\"seq\":", -1).length - 1;
        if (calls != 1) {
            throw new AssertionError("expected 1 GET " + path + ", the proxy saw: " + sent);
        }
        // @AfterAll: close the session; its counts say whether it passed
        String closed = control("DELETE", "/sessions/" + cassette, null);
        if (!closed.contains("\"passed\": true")) {
            throw new IllegalStateException("session failed: " + closed);
        }
    }
}
