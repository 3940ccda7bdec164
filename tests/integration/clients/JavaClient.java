// A Java program that knows nothing of replayproxy: GET a URL, print the body.
// java JavaClient httpclient|urlconnection URL
import java.io.InputStream;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class JavaClient {
    public static void main(String[] args) throws Exception {
        byte[] body;
        if (args[0].equals("httpclient")) {
            HttpClient client = HttpClient.newHttpClient();
            HttpRequest request = HttpRequest.newBuilder(URI.create(args[1])).build();
            body = client.send(request, HttpResponse.BodyHandlers.ofByteArray()).body();
        } else {
            try (InputStream in = new URL(args[1]).openConnection().getInputStream()) {
                body = in.readAllBytes();
            }
        }
        System.out.write(body);
        System.out.flush();
    }
}
