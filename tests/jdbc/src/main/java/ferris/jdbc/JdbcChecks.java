package ferris.jdbc;

import java.io.FileOutputStream;
import java.io.InputStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.math.BigDecimal;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.ParameterMetaData;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.SQLFeatureNotSupportedException;
import java.sql.Statement;
import java.sql.Types;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.stream.Stream;

/**
 * Drives a running `ferris server` through the Arrow Flight SQL JDBC driver, as a SQL tool
 * would: connecting (token, user and password, TLS), reading the database metadata, querying,
 * preparing statements with parameters, starting jobs.
 *
 * <pre>
 *   java --add-opens=java.base/java.nio=ALL-UNNAMED -cp CLASSPATH ferris.jdbc.JdbcChecks \
 *       --port PORT --tls-port TLS_PORT --token TOKEN --ca CA.pem --dir SERVER_DIR
 * </pre>
 *
 * <p>PORT is a server started with {@code --auth-token TOKEN} in SERVER_DIR (the checks write
 * their data files there, and name them by relative paths); TLS_PORT the same with a certificate
 * signed by CA.pem. One line per check passed; at the first failure, {@code FAIL what: why} and
 * exit code 1.
 */
public final class JdbcChecks {
  /** How long a job's output or a table's state may take to show. */
  private static final long WAIT_MS = 20_000;

  private final String port;
  private final String tlsPort;
  private final String token;
  private final Path ca;
  private final Path dir;

  private JdbcChecks(Map<String, String> args) {
    port = required(args, "--port");
    tlsPort = required(args, "--tls-port");
    token = required(args, "--token");
    ca = Path.of(required(args, "--ca"));
    dir = Path.of(required(args, "--dir"));
  }

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      args.put(argv[i], argv[i + 1]);
    }
    new JdbcChecks(args).run();
    System.out.println("all JDBC checks passed");
  }

  private static String required(Map<String, String> args, String name) {
    String value = args.get(name);
    if (value == null) {
      System.err.println("usage: JdbcChecks --port P --tls-port P --token T --ca CA.pem --dir DIR");
      System.exit(2);
    }
    return value;
  }

  /** A check's body: anything it throws fails it. */
  private interface Body {
    void run() throws Exception;
  }

  /** Runs a check: prints {@code ok   what}, or {@code FAIL what: why} and exits with 1. */
  private static void check(String what, Body body) {
    try {
      body.run();
    } catch (Throwable e) {
      e.printStackTrace();
      System.out.println("FAIL " + what + ": " + messages(e));
      System.exit(1);
    }
    System.out.println("ok   " + what);
  }

  private static void expect(boolean holds, String what) {
    if (!holds) {
      throw new AssertionError(what);
    }
  }

  private static void expectEqual(Object got, Object expected, String what) {
    if (got == null ? expected != null : !got.equals(expected)) {
      throw new AssertionError(what + ": got " + got + ", expected " + expected);
    }
  }

  /** The messages of an exception and its causes, for matching what the server said. */
  private static String messages(Throwable e) {
    StringBuilder all = new StringBuilder();
    for (Throwable t = e; t != null; t = t.getCause()) {
      all.append(all.length() == 0 ? "" : " <- ").append(t);
    }
    return all.toString();
  }

  /** Runs {@code body}, which must fail with an SQLException; returns it. */
  private static SQLException expectSqlError(Body body, String what) throws Exception {
    try {
      body.run();
    } catch (SQLException e) {
      return e;
    }
    throw new AssertionError(what + " succeeded");
  }

  private interface Condition {
    boolean holds() throws Exception;
  }

  private static void waitUntil(String what, Condition condition) throws Exception {
    long deadline = System.currentTimeMillis() + WAIT_MS;
    while (!condition.holds()) {
      if (System.currentTimeMillis() > deadline) {
        throw new AssertionError("after " + WAIT_MS + " ms: " + what);
      }
      Thread.sleep(100);
    }
  }

  private static String encode(String value) {
    return URLEncoder.encode(value, StandardCharsets.UTF_8);
  }

  private String plainUrl() {
    return "jdbc:arrow-flight-sql://127.0.0.1:" + port + "/?useEncryption=false";
  }

  /** Every row of a result, each column by label, as text (null as null). */
  private static List<Map<String, String>> rows(ResultSet rs) throws SQLException {
    List<Map<String, String>> rows = new ArrayList<>();
    ResultSetMetaData meta = rs.getMetaData();
    while (rs.next()) {
      Map<String, String> row = new TreeMap<>();
      for (int i = 1; i <= meta.getColumnCount(); i++) {
        row.put(meta.getColumnLabel(i), rs.getString(i));
      }
      rows.add(row);
    }
    rs.close();
    return rows;
  }

  private static List<Map<String, String>> query(Connection conn, String sql) throws SQLException {
    try (Statement st = conn.createStatement()) {
      return rows(st.executeQuery(sql));
    }
  }

  private void run() throws Exception {
    connecting();
    try (Connection conn = DriverManager.getConnection(plainUrl() + "&token=" + encode(token))) {
      typedValues(conn);
      jobsAndPreparedStatements(conn);
      metadata(conn);
      errors(conn);
    }
  }

  /** Connects with {@code url} and {@code properties}, and runs a query. */
  private static void connectsAndQueries(String url, Properties properties) throws Exception {
    try (Connection conn = DriverManager.getConnection(url, properties)) {
      expectEqual(query(conn, "SELECT 42 AS answer"), List.of(Map.of("answer", "42")), "SELECT 42");
    }
  }

  private void connecting() throws Exception {
    check("no credentials: refused, the server's message in the SQLException", () -> {
      try (Connection conn = DriverManager.getConnection(plainUrl())) {
        SQLException e = expectSqlError(() -> query(conn, "SELECT 1"), "a query without a token");
        expect(messages(e).contains("Bearer"), "the refusal: " + messages(e));
      }
    });
    String withToken = plainUrl() + "&token=" + encode(token);
    check("a token: " + withToken, () -> connectsAndQueries(withToken, new Properties()));
    String withUser = plainUrl() + "&user=ferris&password=" + encode(token);
    check("a user and password, for the handshake's bearer token: " + withUser, () ->
        connectsAndQueries(withUser, new Properties()));
    Properties user = new Properties();
    user.setProperty("user", "ferris");
    user.setProperty("password", token);
    check("a user and password as connection properties: " + plainUrl(), () ->
        connectsAndQueries(plainUrl(), user));
    check("a wrong password is refused when connecting", () -> {
      String url = plainUrl() + "&user=ferris&password=guess";
      SQLException e =
          expectSqlError(() -> DriverManager.getConnection(url).close(), "a wrong password");
      expect(messages(e).contains("UNAUTHENTICATED"), "the refusal: " + messages(e));
    });

    String tlsUrl = "jdbc:arrow-flight-sql://127.0.0.1:" + tlsPort + "/?useEncryption=true";
    String withPem = tlsUrl + "&tlsRootCerts=" + encode(ca.toString()) + "&token=" + encode(token);
    check("TLS, trusting the CA's PEM file: " + withPem, () ->
        connectsAndQueries(withPem, new Properties()));
    Path store = dir.resolve("truststore.p12");
    String withStore =
        tlsUrl
            + "&useSystemTrustStore=false&trustStore="
            + encode(store.toString())
            + "&trustStorePassword=changeit&user=ferris&password="
            + encode(token);
    check("TLS, trusting a Java key store: " + withStore, () -> {
      KeyStore keys = KeyStore.getInstance("PKCS12");
      keys.load(null, null);
      try (InputStream pem = Files.newInputStream(ca)) {
        keys.setCertificateEntry(
            "ferris-ca", CertificateFactory.getInstance("X.509").generateCertificate(pem));
      }
      try (FileOutputStream out = new FileOutputStream(store.toFile())) {
        keys.store(out, "changeit".toCharArray());
      }
      connectsAndQueries(withStore, new Properties());
    });
    check("TLS: a server the system's authorities do not vouch for is refused", () ->
        expectSqlError(
            () -> connectsAndQueries(tlsUrl + "&token=" + encode(token), new Properties()),
            "trusting a self-signed server"));
  }

  /** One row of typed.jsonl: nulls where a column is null. */
  private record Typed(long id, String symbol, BigDecimal price, LocalDateTime ts, Long qty) {}

  private static final List<Typed> TYPED =
      List.of(
          new Typed(
              1,
              "NVDA",
              new BigDecimal("181.25"),
              LocalDateTime.of(2026, 1, 5, 9, 30, 0, 125_000_000),
              100L),
          new Typed(2, "AAPL", null, LocalDateTime.of(2026, 1, 5, 9, 30, 1), 50L),
          new Typed(3, "NVDA", new BigDecimal("-0.01"), null, null),
          new Typed(
              4,
              null,
              new BigDecimal("99999999.99"),
              LocalDateTime.of(1999, 12, 31, 23, 59, 59),
              7L));

  private static String json(Object value) {
    if (value == null) {
      return "null";
    }
    return value instanceof String ? "\"" + value + "\"" : value.toString();
  }

  private static final String TYPED_SOURCE =
      "'typed.type' = 'file_source', 'typed.path' = 'typed.jsonl', 'typed.format' = 'json', "
          + "'typed.schema' = "
          + "'id BIGINT, symbol VARCHAR, price DECIMAL(10,2), ts TIMESTAMP, qty BIGINT'";

  private void typedValues(Connection conn) throws Exception {
    StringBuilder lines = new StringBuilder();
    for (Typed row : TYPED) {
      lines.append(
          String.format(
              "{\"id\":%d,\"symbol\":%s,\"price\":%s,\"ts\":%s,\"qty\":%s}%n",
              row.id(),
              json(row.symbol()),
              json(row.price()),
              json(row.ts() == null ? null : row.ts().toString()),
              json(row.qty())));
    }
    Files.writeString(dir.resolve("typed.jsonl"), lines);

    check("a query over a file: DECIMAL, TIMESTAMP, BIGINT, VARCHAR and NULL values", () -> {
      String sql =
          "SELECT id, symbol, price, ts, qty FROM typed ORDER BY id WITH (" + TYPED_SOURCE + ")";
      try (Statement st = conn.createStatement();
          ResultSet rs = st.executeQuery(sql)) {
        ResultSetMetaData meta = rs.getMetaData();
        expectEqual(meta.getColumnCount(), 5, "columns");
        expectEqual(meta.getColumnType(1), Types.BIGINT, "id's type");
        expectEqual(meta.getColumnType(2), Types.VARCHAR, "symbol's type");
        expectEqual(meta.getColumnType(3), Types.DECIMAL, "price's type");
        expectEqual(meta.getPrecision(3), 10, "price's precision");
        expectEqual(meta.getScale(3), 2, "price's scale");
        expectEqual(meta.getColumnType(4), Types.TIMESTAMP, "ts's type");
        for (Typed expected : TYPED) {
          expect(rs.next(), "row " + expected.id() + " is missing");
          String row = "row " + expected.id() + ": ";
          expectEqual(rs.getLong("id"), expected.id(), row + "id");
          expectEqual(rs.getString("symbol"), expected.symbol(), row + "symbol");
          expectEqual(rs.wasNull(), expected.symbol() == null, row + "symbol wasNull");
          expectEqual(rs.getBigDecimal("price"), expected.price(), row + "price");
          expectEqual(rs.wasNull(), expected.price() == null, row + "price wasNull");
          java.sql.Timestamp ts = rs.getTimestamp("ts");
          expectEqual(ts == null ? null : ts.toLocalDateTime(), expected.ts(), row + "ts");
          expectEqual(rs.wasNull(), expected.ts() == null, row + "ts wasNull");
          long qty = rs.getLong("qty");
          expectEqual(rs.wasNull() ? null : qty, expected.qty(), row + "qty");
        }
        expect(!rs.next(), "more rows than " + TYPED.size());
      }
    });
  }

  /** The folder a watched source reads: files land in it while the job runs. */
  private Path inbox() {
    return dir.resolve("inbox");
  }

  private void jobsAndPreparedStatements(Connection conn) throws Exception {
    check("executeUpdate(CREATE STREAM ...) starts a job that writes its sink", () -> {
      try (Statement st = conn.createStatement()) {
        int count = st.executeUpdate(
            "CREATE STREAM big_orders AS SELECT id, symbol, qty FROM typed WHERE qty > 10 WITH ("
                + TYPED_SOURCE
                + ", 'big_orders.type' = 'file_sink', 'big_orders.path' = 'big_orders.jsonl')");
        // The statement answers a row (the job's), so the driver counts no update.
        expectEqual(count, -1, "the update count");
      }
      Path sink = dir.resolve("big_orders.jsonl");
      waitUntil("big_orders.jsonl holds the 2 rows with qty > 10", () ->
          Files.exists(sink) && Files.readAllLines(sink).size() == 2);
      expectEqual(
          Files.readAllLines(sink),
          List.of(
              "{\"id\":1,\"symbol\":\"NVDA\",\"qty\":100}",
              "{\"id\":2,\"symbol\":\"AAPL\",\"qty\":50}"),
          "big_orders.jsonl");
    });

    Files.createDirectories(inbox());
    Files.writeString(inbox().resolve("1.csv"), "symbol,qty\nNVDA,10\nAAPL,5\nNVDA,20\n");
    // A table without a sink: the server keeps it.
    check("execute(CREATE TABLE ...) over a watched folder answers job and status", () -> {
      try (Statement st = conn.createStatement()) {
        expect(
            st.execute(
                "CREATE TABLE symbol_totals AS SELECT symbol, COUNT(*) AS trades, SUM(qty) AS qty "
                    + "FROM ticks GROUP BY symbol WITH ("
                    + "'ticks.type' = 'file_source', 'ticks.path' = 'inbox/', "
                    + "'ticks.format' = 'csv', "
                    + "'ticks.schema' = 'symbol VARCHAR, qty BIGINT', 'ticks.watch' = 'true', "
                    + "'ticks.watch.interval' = '50ms')"),
            "CREATE TABLE returns a result set");
        expectEqual(
            rows(st.getResultSet()),
            List.of(Map.of("job", "symbol_totals", "status", "RUNNING")),
            "the reply");
      }
    });
    check("SHOW JOBS lists the running table and the finished stream", () -> {
      waitUntil("big_orders FINISHED, symbol_totals RUNNING", () -> {
        Map<String, String> status = new HashMap<>();
        for (Map<String, String> row : query(conn, "SHOW JOBS")) {
          status.put(row.get("name"), row.get("status"));
        }
        return "FINISHED".equals(status.get("big_orders"))
            && "RUNNING".equals(status.get("symbol_totals"));
      });
    });
    check("a pull query reads the running table's current state, by name or qualified", () -> {
      List<Map<String, String>> expected = List.of(
          Map.of("symbol", "AAPL", "trades", "1", "qty", "5"),
          Map.of("symbol", "NVDA", "trades", "2", "qty", "30"));
      waitUntil("symbol_totals has NVDA's 2 trades", () ->
          query(conn, "SELECT symbol, trades, qty FROM symbol_totals ORDER BY symbol")
              .equals(expected));
      // As SQL tools write it, with the catalog and schema getTables lists it under.
      expectEqual(
          query(conn, "SELECT * FROM \"ferris\".\"public\".\"symbol_totals\" ORDER BY symbol"),
          expected,
          "ferris.public.symbol_totals");
    });

    check("a PreparedStatement with ?: its parameter's type, and one execution per binding", () -> {
      try (PreparedStatement ps =
          conn.prepareStatement("SELECT trades, qty FROM symbol_totals WHERE symbol = ?")) {
        ParameterMetaData parameters = ps.getParameterMetaData();
        expectEqual(parameters.getParameterCount(), 1, "parameters");
        expectEqual(parameters.getParameterType(1), Types.VARCHAR, "the parameter's type");
        ps.setString(1, "NVDA");
        expectEqual(rows(ps.executeQuery()), List.of(Map.of("trades", "2", "qty", "30")), "NVDA");
        ps.setString(1, "AAPL");
        expectEqual(rows(ps.executeQuery()), List.of(Map.of("trades", "1", "qty", "5")), "AAPL");
        // The table's state moves on: the same statement, executed again, sees it.
        Files.writeString(inbox().resolve("2.csv"), "symbol,qty\nNVDA,1\n");
        ps.setString(1, "NVDA");
        waitUntil("NVDA's third trade", () ->
            rows(ps.executeQuery()).equals(List.of(Map.of("trades", "3", "qty", "31"))));
      }
    });
    check("? placeholders are numbered in order: (BIGINT, VARCHAR)", () -> {
      try (PreparedStatement ps = conn.prepareStatement(
          "SELECT symbol FROM symbol_totals WHERE trades >= ? AND symbol <> ? ORDER BY symbol")) {
        ParameterMetaData parameters = ps.getParameterMetaData();
        expectEqual(parameters.getParameterCount(), 2, "parameters");
        expectEqual(parameters.getParameterType(1), Types.BIGINT, "the first one's type");
        expectEqual(parameters.getParameterType(2), Types.VARCHAR, "the second one's type");
        ps.setLong(1, 1);
        ps.setString(2, "AAPL");
        expectEqual(rows(ps.executeQuery()), List.of(Map.of("symbol", "NVDA")), "the rows");
      }
    });
    check("$1 placeholders work as well; an empty result keeps its columns", () -> {
      try (PreparedStatement ps =
          conn.prepareStatement("SELECT qty FROM symbol_totals WHERE symbol = $1")) {
        ps.setString(1, "AAPL");
        expectEqual(rows(ps.executeQuery()), List.of(Map.of("qty", "5")), "AAPL");
        ps.setString(1, "nobody");
        try (ResultSet rs = ps.executeQuery()) {
          expect(!rs.next(), "a row for nobody");
          expectEqual(rs.getMetaData().getColumnCount(), 1, "the empty result's columns");
        }
      }
    });
    check("a parameter the statement gives no type is text (VARCHAR)", () -> {
      try (PreparedStatement ps = conn.prepareStatement("SELECT CAST(? AS BIGINT) + 1 AS answer")) {
        expectEqual(ps.getParameterMetaData().getParameterType(1), Types.VARCHAR, "its type");
        ps.setString(1, "41");
        expectEqual(rows(ps.executeQuery()), List.of(Map.of("answer", "42")), "the answer");
      }
    });

    check("INSERT INTO stream VALUES (?, ?): executeBatch writes every row", () -> {
      try (Statement st = conn.createStatement()) {
        st.execute(
            "CREATE STREAM manual AS SELECT symbol, qty FROM ticks WHERE qty < 0 WITH ("
                + "'ticks.type' = 'file_source', 'ticks.path' = 'inbox/1.csv', "
                + "'ticks.format' = 'csv', "
                + "'ticks.schema' = 'symbol VARCHAR, qty BIGINT', "
                + "'manual.type' = 'file_sink', 'manual.path' = 'manual/')");
      }
      try (PreparedStatement ps = conn.prepareStatement("INSERT INTO manual VALUES (?, ?)")) {
        ps.setString(1, "ZZZ");
        ps.setLong(2, 7);
        ps.addBatch();
        ps.setString(1, "YYY");
        ps.setLong(2, 9);
        ps.addBatch();
        ps.executeBatch();
      }
      Path folder = dir.resolve("manual");
      waitUntil("manual/ holds the 2 inserted rows", () -> partLines(folder).size() == 2);
      expectEqual(
          partLines(folder),
          List.of("{\"symbol\":\"YYY\",\"qty\":9}", "{\"symbol\":\"ZZZ\",\"qty\":7}"),
          "manual/");
    });
  }

  /** The lines of a folder sink's committed part files, sorted. */
  private static List<String> partLines(Path folder) throws Exception {
    if (!Files.isDirectory(folder)) {
      return List.of();
    }
    List<String> lines = new ArrayList<>();
    try (Stream<Path> parts = Files.list(folder)) {
      for (Path part : parts.filter(p -> !p.getFileName().toString().startsWith(".")).toList()) {
        lines.addAll(Files.readAllLines(part));
      }
    }
    lines.sort(null);
    return lines;
  }

  private void metadata(Connection conn) throws Exception {
    DatabaseMetaData meta = conn.getMetaData();
    check("getCatalogs: ferris", () ->
        expectEqual(rows(meta.getCatalogs()), List.of(Map.of("TABLE_CAT", "ferris")), "catalogs"));
    check("getSchemas: public in ferris", () ->
        expectEqual(
            rows(meta.getSchemas()),
            List.of(Map.of("TABLE_CATALOG", "ferris", "TABLE_SCHEM", "public")),
            "schemas"));
    check("getTableTypes: TABLE, STREAM, VIEW", () -> {
      List<String> types = new ArrayList<>();
      for (Map<String, String> row : rows(meta.getTableTypes())) {
        types.add(row.get("TABLE_TYPE"));
      }
      expectEqual(types, List.of("TABLE", "STREAM", "VIEW"), "table types");
    });
    check("getTables: the jobs' streams and tables and their sources, filtered by type", () -> {
      Map<String, String> types = new TreeMap<>();
      for (Map<String, String> row : rows(meta.getTables(null, null, "%", null))) {
        expectEqual(row.get("TABLE_CAT"), "ferris", row + " catalog");
        expectEqual(row.get("TABLE_SCHEM"), "public", row + " schema");
        types.put(row.get("TABLE_NAME"), row.get("TABLE_TYPE"));
      }
      expectEqual(types.get("symbol_totals"), "TABLE", "symbol_totals in " + types);
      expectEqual(types.get("big_orders"), "STREAM", "big_orders in " + types);
      expectEqual(types.get("typed"), "STREAM", "the source typed in " + types);
      List<String> tables = new ArrayList<>();
      String[] onlyTables = {"TABLE"};
      for (Map<String, String> row : rows(meta.getTables(null, null, "%", onlyTables))) {
        tables.add(row.get("TABLE_NAME"));
      }
      expectEqual(tables, List.of("symbol_totals"), "the tables of type TABLE");
    });
    check("getColumns: names, JDBC types, precision and scale, nullability", () -> {
      List<String> columns = new ArrayList<>();
      try (ResultSet rs = meta.getColumns(null, null, "typed", "%")) {
        while (rs.next()) {
          columns.add(String.format(
              "%d %s %s %d %s",
              rs.getInt("ORDINAL_POSITION"),
              rs.getString("COLUMN_NAME"),
              rs.getString("TYPE_NAME"),
              rs.getInt("DATA_TYPE"),
              rs.getString("IS_NULLABLE")));
          if (rs.getString("COLUMN_NAME").equals("price")) {
            expectEqual(rs.getInt("COLUMN_SIZE"), 10, "price's precision");
            expectEqual(rs.getInt("DECIMAL_DIGITS"), 2, "price's scale");
          }
        }
      }
      expectEqual(
          columns,
          List.of(
              "1 id BIGINT " + Types.BIGINT + " YES",
              "2 symbol VARCHAR " + Types.VARCHAR + " YES",
              "3 price DECIMAL " + Types.DECIMAL + " YES",
              "4 ts TIMESTAMP " + Types.TIMESTAMP + " YES",
              "5 qty BIGINT " + Types.BIGINT + " YES"),
          "typed's columns");
    });
    check("getTypeInfo answers (driver 18.3 answers it itself, with no rows)", () -> {
      // The driver never sends GetXdbcTypeInfo: Avatica's default answers, empty.
      try (ResultSet rs = meta.getTypeInfo()) {
        expectEqual(rs.getMetaData().getColumnLabel(1), "TYPE_NAME", "the first column");
      }
    });
    check("SqlInfo: product, quoting, keywords and features", () -> {
      expectEqual(meta.getDatabaseProductName(), "FerrisStreams", "product name");
      expect(!meta.getDatabaseProductVersion().isEmpty(), "a product version");
      expectEqual(meta.getIdentifierQuoteString(), "\"", "identifier quote");
      List<String> keywords = List.of(meta.getSQLKeywords().split(",\\s*"));
      expect(keywords.containsAll(List.of("STREAM", "EMIT", "TUMBLING")), "keywords " + keywords);
      expect(!meta.isReadOnly(), "read-only");
      expect(!meta.supportsTransactions(), "transactions");
      expectEqual(meta.getDefaultTransactionIsolation(), Connection.TRANSACTION_NONE, "isolation");
      expect(meta.supportsColumnAliasing(), "column aliases");
      expect(meta.supportsGroupBy() && meta.supportsGroupByUnrelated(), "GROUP BY");
      expect(meta.supportsUnionAll(), "UNION ALL");
      expect(meta.supportsFullOuterJoins(), "FULL OUTER JOIN");
      expect(meta.supportsSubqueriesInExists(), "EXISTS subqueries");
      expect(meta.supportsResultSetType(ResultSet.TYPE_FORWARD_ONLY), "forward-only results");
      expect(!meta.supportsStoredProcedures(), "stored procedures");
      expect(meta.supportsConvert(), "CAST");
    });
    check("every DatabaseMetaData call without arguments answers (as SQL tools call them)", () -> {
      List<String> failed = new ArrayList<>();
      for (Method method : DatabaseMetaData.class.getMethods()) {
        if (method.getParameterCount() != 0) {
          continue;
        }
        try {
          if (method.invoke(meta) instanceof ResultSet rs) {
            rs.close();
          }
        } catch (InvocationTargetException e) {
          if (!(e.getCause() instanceof SQLFeatureNotSupportedException)) {
            failed.add(method.getName() + ": " + messages(e.getCause()));
          }
        }
      }
      expect(failed.isEmpty(), failed.size() + " calls failed: " + String.join("; ", failed));
    });
  }

  private void errors(Connection conn) throws Exception {
    check("a SQL error's message, with its position, reaches the SQLException", () -> {
      SQLException e = expectSqlError(() -> query(conn, "SELECT nope"), "SELECT nope");
      expect(
          e.getMessage().contains("1:8: column 'nope' not found"),
          "the message: " + e.getMessage());
    });
    check("mixing ? and $1 is refused at the placeholder's position", () -> {
      SQLException e = expectSqlError(
          () -> conn.prepareStatement("SELECT qty FROM symbol_totals WHERE symbol = ? OR qty > $1"),
          "mixed placeholders");
      // prepareStatement's exception says what it prepared; its cause, what the server said.
      expect(
          messages(e).contains("1:57: placeholder $1 after ? at 1:46"),
          "the error: " + messages(e));
    });
  }
}
