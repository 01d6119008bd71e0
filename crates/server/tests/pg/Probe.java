// The PostgreSQL JDBC driver as Looker Studio, Metabase and DBeaver drive it: the tables and
// columns of DatabaseMetaData, then a prepared query. Prints key=value lines for the test.
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class Probe {
    public static void main(String[] args) throws Exception {
        Properties login = new Properties();
        login.setProperty("user", args[1]);
        login.setProperty("password", args[2]);
        try (Connection connection = DriverManager.getConnection(args[0], login)) {
            DatabaseMetaData meta = connection.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, null, "%", new String[] {"TABLE", "VIEW"})) {
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
                }
            }
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "images", "%")) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME"));
                }
            }
            long count;
            String sql = "SELECT count(*) FROM live.images WHERE bytes > ? AND uploaded_at > now() - INTERVAL '1 day'";
            try (PreparedStatement statement = connection.prepareStatement(sql)) {
                statement.setLong(1, 0L);
                try (ResultSet rs = statement.executeQuery()) {
                    rs.next();
                    count = rs.getLong(1);
                }
            }
            System.out.println("tables=" + String.join(",", tables));
            System.out.println("columns=" + String.join(",", columns));
            System.out.println("count=" + count);
            System.out.println("version=" + meta.getDatabaseProductVersion());
        }
    }
}
