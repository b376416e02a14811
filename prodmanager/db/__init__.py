"""ProdManager's database: schema, engine set-up, migrations, and the one module with SQL."""
